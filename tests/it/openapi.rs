//! `/openapi.json` and `/docs`: the document served is the committed one, and the Swagger UI
//! is whole without the internet (every asset its page loads comes from the gateway).

use reqwest::{Method, StatusCode};
use serde_json::Value;
use surge_tests::TestApp;

#[tokio::test]
async fn the_served_document_is_the_committed_one_and_needs_no_key() {
    let app = TestApp::spawn().await;
    // Any JSON document: compared whole with the file.
    let served: Value = app.anonymous().get("/openapi.json", StatusCode::OK).await;
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(served, committed);
    assert_eq!(served["openapi"], "3.1.0");
}

#[tokio::test]
async fn the_swagger_ui_is_served_whole_from_the_gateway() {
    let app = TestApp::spawn().await;
    let page = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    // Every script and stylesheet the page names is relative (served here), and is there.
    let assets: Vec<&str> = html
        .split(['"', '\''])
        .filter(|s| s.ends_with(".js") || s.ends_with(".css"))
        .collect();
    assert!(assets.len() >= 3, "{assets:?}");
    for asset in assets {
        assert!(!asset.contains("//"), "{asset} is loaded from elsewhere");
        let url = app.url(&format!("/docs/{}", asset.trim_start_matches("./")));
        let response = app.client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        assert!(
            response.bytes().await.unwrap().len() > 100,
            "{url} is empty"
        );
    }
    // The initializer points the UI at this gateway's document.
    let init = app
        .request(Method::GET, "/docs/swagger-initializer.js")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(init.contains("/openapi.json"), "{init}");
}

#[tokio::test]
async fn a_generated_client_runs_a_function_by_a_parameter_named_function() {
    let mut app = TestApp::spawn().await;
    let _echo = app.start_function("echo", &[]).await;
    let doc: Value = app.api().get("/openapi.json", StatusCode::OK).await;
    let operation = &doc["paths"]["/functions/{function}/jobs"]["post"];
    assert_eq!(operation["operationId"], "run_function");
    assert_eq!(operation["parameters"][0]["name"], "function");
    // The same operation as the design's `POST /jobs/{function}`.
    let input = serde_json::json!({"n": 7});
    let job: surge_gateway::views::JobView = app
        .api()
        .post("/functions/echo/jobs", &input, StatusCode::OK)
        .await;
    assert_eq!(job.result, Some(input.clone()));
    assert_eq!(app.call("echo", &input).await.result, Some(input));
    app.api()
        .post_problem(
            "/functions/nope/jobs",
            &serde_json::json!({}),
            StatusCode::NOT_FOUND,
        )
        .await;
}
