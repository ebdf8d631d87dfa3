"""The agent's Restate deployment on AWS Lambda: handler `deploy.lambda_handler.handler`.

The Restate SDK serves Lambda events itself: on Lambda (where AWS_LAMBDA_FUNCTION_NAME is set)
`restate.app(...)` returns a Lambda handler instead of an ASGI app, which turns each event into
one request-response exchange. Lambda runs one request per instance and freezes or drops the
instance between requests, so the worker speaks request-response: each request carries the
journal so far, and nothing lives in the instance between requests.

Configure the function's environment as docs/deploy.md says (SANDBOX_BACKEND=modal and Modal's
token, the model's key, AGENT_DATA_DIR=/tmp/agent, WORKER_IDENTITY_KEYS), then register its ARN:

    restate deployments register arn:aws:lambda:<region>:<account>:function:<name>:<version> \
        --assume-role-arn arn:aws:iam::<account>:role/<restate-invoker-role>
"""

from __future__ import annotations

from app.main import build_app

handler = build_app(protocol="request-response")
