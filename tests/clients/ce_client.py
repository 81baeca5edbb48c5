#!/usr/bin/env python3
"""A CloudEvents producer and consumer built on the official Python SDK (PyPI `cloudevents`),
used by the end-to-end tests to prove that Surge interoperates with another SDK.

  ce_client.py http-send URL [--mode binary|structured] [--header 'Name: value']...
                                                         event JSON on stdin -> prints {"status", "headers", "body"}
  ce_client.py rabbitmq-encode                           event JSON on stdin -> prints the AMQP message
  ce_client.py rabbitmq-decode                           AMQP message JSON on stdin -> prints the event

An event on stdin is {"attributes": {...}, "data": ...}. An AMQP message is
{"headers": {name: text}, "content_type": text|null, "body_b64": text}.
"""

import base64
import json
import sys
import urllib.error
import urllib.request

from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import rabbitmq as ce_rabbitmq
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent


def read_event() -> CloudEvent:
    spec = json.load(sys.stdin)
    return CloudEvent(attributes=spec["attributes"], data=spec.get("data"))


def http_send(url: str, mode: str, extra_headers: dict[str, str]) -> None:
    event = read_event()
    message = (ce_http.to_binary if mode == "binary" else ce_http.to_structured)(event, JSONFormat())
    headers = {**message.headers, **extra_headers}
    request = urllib.request.Request(url, data=message.body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, got, body = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        status, got, body = error.code, dict(error.headers), error.read()
    json.dump(
        {"status": status, "headers": {k.lower(): v for k, v in got.items()}, "body": body.decode("utf-8", "replace")},
        sys.stdout,
    )


def rabbitmq_encode() -> None:
    message = ce_rabbitmq.to_binary(read_event(), JSONFormat())
    json.dump(
        {
            "headers": message.headers,
            "content_type": message.content_type,
            "body_b64": base64.b64encode(message.body).decode(),
        },
        sys.stdout,
    )


def rabbitmq_decode() -> None:
    raw = json.load(sys.stdin)
    message = ce_rabbitmq.RabbitMQMessage(
        headers=raw["headers"], content_type=raw["content_type"], body=base64.b64decode(raw["body_b64"])
    )
    event = ce_rabbitmq.from_rabbitmq(message, JSONFormat())
    attributes = {
        k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in event.get_attributes().items()
    }
    json.dump({"attributes": attributes, "data": event.get_data()}, sys.stdout, default=str)


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "http-send":
        args = sys.argv[3:]
        mode, headers = "binary", {}
        while args:
            flag, value, args = args[0], args[1], args[2:]
            if flag == "--mode":
                mode = value
            elif flag == "--header":
                name, _, text = value.partition(":")
                headers[name.strip()] = text.strip()
        http_send(sys.argv[2], mode, headers)
    elif command == "rabbitmq-encode":
        rabbitmq_encode()
    elif command == "rabbitmq-decode":
        rabbitmq_decode()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
