"""Services: handlers bound to patterns, their dispatch and their lifecycle."""

from zmsg.service.context import Context
from zmsg.service.handlers import event_pattern, message_pattern
from zmsg.service.service import Service, ServiceStats

__all__ = ["Context", "Service", "ServiceStats", "event_pattern", "message_pattern"]
