"""What the command line shows: the library's own log lines, and third-party chatter off.

The library logs through ``logging.getLogger(__name__)`` (names under ``agents.``
and ``reasoning_gym.``) and never configures logging itself; a program that
imports it keeps its own set-up. The ``rest-mcts`` entry point calls
`setup_logging` once:

- the library's loggers at INFO (DEBUG with ``verbose``), one concise line each,
  written through ``tqdm.write`` on stderr so that lines and progress bars do
  not tear each other;
- unless ``verbose``: the per-call progress bars of ``datasets`` (every
  ``Dataset.map``, ``save_to_disk``) and of transformers ("Loading weights",
  "Writing model shards") off; transformers, datasets, TRL, accelerate and
  huggingface_hub logging at ERROR; deprecation notices (``FutureWarning``,
  ``DeprecationWarning``, meant for whoever maintains the code) ignored. The
  library's own bars (one per stage) stay, and so do other warnings.
"""

from __future__ import annotations

import logging
import sys
import warnings

from tqdm.auto import tqdm

LIBRARY_LOGGERS = ("agents", "reasoning_gym")
THIRD_PARTY_LOGGERS = ("trl", "accelerate", "huggingface_hub")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%H:%M:%S"


class TqdmHandler(logging.Handler):
    """Writes each record with ``tqdm.write`` to the current ``sys.stderr`` (above any open bar)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def setup_logging(verbose: bool = False) -> None:
    """Configure logging for the command line; calling it again replaces the earlier set-up.

    Args:
        verbose: the library at DEBUG (each training log line, the loss every
            ``logging_steps``), and third-party logging, progress bars and
            deprecation warnings as their libraries set them by default.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, TqdmHandler)]:
        root.removeHandler(handler)
    handler = TqdmHandler()
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    root.addHandler(handler)
    if root.level == logging.NOTSET:  # other libraries: warnings and errors only
        root.setLevel(logging.WARNING)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.ERROR)
    if not verbose:
        for category in (FutureWarning, DeprecationWarning):
            warnings.filterwarnings("ignore", category=category)
    _third_party(verbose)


def _third_party(verbose: bool) -> None:
    """transformers and datasets keep their own handlers, levels and bar switches."""
    import datasets
    import transformers.utils.logging as transformers_logging
    from datasets.utils import logging as datasets_logging

    if verbose:
        transformers_logging.set_verbosity_warning()
        transformers_logging.enable_progress_bar()
        datasets_logging.set_verbosity_warning()
        datasets.enable_progress_bars()
    else:
        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()
        datasets_logging.set_verbosity_error()
        datasets.disable_progress_bars()
