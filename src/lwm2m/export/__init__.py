"""Export of what the server sees to the user's systems: Prometheus metrics (``metrics``),
events to and commands from an MQTT broker (``mqtt``), webhooks (``webhooks``), both run by an
export worker process off the server's ingest path (``handoff``).

The modules import their third-party packages (``prometheus-client`` for ``metrics``,
``aiomqtt`` for ``mqtt``) at their top, so this package imports none of them: import the
module you use.
"""

__all__ = ["handoff", "metrics", "mqtt", "webhooks"]
