"""REST service and web page over a :class:`~emovox.predict.Predictor`."""

from emovox.serve.app import ServiceLimits, create_app

__all__ = ["ServiceLimits", "create_app"]
