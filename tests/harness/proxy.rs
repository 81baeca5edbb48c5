//! A TCP proxy between a Surge process and a real server (the broker, the database) that a
//! test can break the way networks break, without touching the machine's own services:
//! `freeze` holds every byte (connections stay open, nothing answers: a confirm that never
//! comes), `cut` closes every connection at once (bytes held are lost: a publish the server
//! never got), `thaw` lets bytes flow again.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A proxy on a free loopback port; stopped (every connection closed) when dropped.
pub struct FaultyProxy {
    addr: SocketAddr,
    frozen: Arc<watch::Sender<bool>>,
    /// Replaced on every cut: connections made since watch the new one.
    cut: Arc<std::sync::Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl FaultyProxy {
    /// Forwards a free port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (frozen, _) = watch::channel(false);
        let frozen = Arc::new(frozen);
        let cut = Arc::new(std::sync::Mutex::new(CancellationToken::new()));
        let stop = CancellationToken::new();
        let accept = {
            let (frozen, cut, stop) = (frozen.clone(), cut.clone(), stop.clone());
            async move {
                loop {
                    let Some(Ok((client, _))) = stop.run_until_cancelled(listener.accept()).await
                    else {
                        return;
                    };
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        continue;
                    };
                    let gone = cut.lock().expect("cut token").child_token();
                    tokio::spawn(pipe(client, server, frozen.subscribe(), gone));
                }
            }
        };
        tokio::spawn(accept);
        Self {
            addr,
            frozen,
            cut,
            stop,
        }
    }

    /// A proxy to the machine's RabbitMQ (`SURGE_TEST_AMQP`'s host and port).
    pub async fn broker() -> Self {
        let url = url::Url::parse(&crate::amqp_url()).expect("amqp url");
        let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
        let port = url.port().unwrap_or(5672);
        let upstream = tokio::net::lookup_host((host.as_str(), port))
            .await
            .expect("broker address")
            .next()
            .expect("an address");
        Self::start(upstream).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// An AMQP URL through this proxy (with the machine broker's credentials and vhost).
    pub fn amqp_url(&self) -> String {
        let mut url = url::Url::parse(&crate::amqp_url()).expect("amqp url");
        url.set_port(Some(self.addr.port())).expect("port");
        url.set_host(Some("127.0.0.1")).expect("host");
        url.to_string()
    }

    /// Holds every byte from now on, both ways; connections stay open.
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Lets bytes flow again.
    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    /// Closes every connection made so far (what they held is lost); new ones are taken.
    pub fn cut(&self) {
        let mut cut = self.cut.lock().expect("cut token");
        cut.cancel();
        *cut = CancellationToken::new();
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut.lock().expect("cut token").cancel();
    }
}

/// Copies both ways until either side closes or the connection is cut; while frozen, what is
/// read is held back.
async fn pipe(
    client: TcpStream,
    server: TcpStream,
    frozen: watch::Receiver<bool>,
    gone: CancellationToken,
) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = copy(client_read, server_write, frozen.clone());
    let down = copy(server_read, client_write, frozen);
    tokio::select! {
        () = gone.cancelled() => {}
        _ = async { tokio::join!(up, down) } => {}
    }
}

async fn copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
