"""REST service and web page over a :class:`~emovox.predict.Predictor`."""

from emovox.serve.app import ServiceLimits, create_app, limit_threads, serving_backend
from emovox.serve.batching import MicroBatcher

__all__ = ["MicroBatcher", "ServiceLimits", "create_app", "limit_threads", "serving_backend"]
