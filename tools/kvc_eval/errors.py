"""The one exception kvc-eval reports as a clean one-line error."""


class EvalError(Exception):
    """Bad input (model, text, config) or a codec failure, with its cause."""
