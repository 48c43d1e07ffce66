"""Messaging channels: how each platform's updates become `Incoming` messages and how replies are sent.

`telegram` and `whatsapp` parse webhook bodies and send through the platform's HTTP API; `text`
splits long answers to each platform's limits. Web chat needs no sender: the browser collects
its replies from the gateway.
"""
