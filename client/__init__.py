"""The terminal client, `agent`: chat with a session and follow its task live, bring code in,
see the diff and take the change out. It talks only to Restate's HTTP ingress (docs/client.md).
"""
