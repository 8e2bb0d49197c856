"""Process-level concerns of the entry points: starting Ray, and failing clearly.

Entry points wrap their work in `fail.on_error()`: a known problem (bad config,
bad data, not enough resources, a diverged stage) ends in one line that names
the problem and the fix and a non-zero exit, never a traceback from deep in a
library. Finished stages are on disk before any of this can happen.
"""

from __future__ import annotations

import contextlib
import os
import sys


class _Fail:
    exit_code = 0

    @contextlib.contextmanager
    def on_error(self):
        from tinyreason.config import ConfigError
        from tinyreason.data.sources import DataError

        try:
            yield
        except (ConfigError, DataError, ValueError, RuntimeError, FloatingPointError, OSError) as e:
            self._report(e)
        except Exception as e:  # Ray wraps worker errors; unwrap to the cause the user can act on
            if type(e).__module__.startswith("ray"):
                self._report(e)
            else:
                raise

    def _report(self, e: BaseException) -> None:
        print(f"\nerror: {root_message(e)}", file=sys.stderr, flush=True)
        self.exit_code = 1


fail = _Fail()


def root_message(e: BaseException) -> str:
    """The innermost meaningful message of a (possibly Ray-wrapped) exception."""
    text = str(e)
    # Ray Train's WorkerGroupError lists each rank's traceback; the last line of a snippet is the error.
    for marker in ("FloatingPointError: ", "ValueError: ", "RuntimeError: ", "OSError: ", "DataError: "):
        if marker in text:
            return marker.rstrip(": ") + ": " + text.rsplit(marker, 1)[1].strip().splitlines()[0]
    return f"{type(e).__name__}: {text.strip().splitlines()[-1] if text.strip() else ''}"


def init_ray(config=None) -> None:
    """Join the cluster when there is one (`ray job submit`, RAY_ADDRESS), else start a local Ray.

    Locally the dashboard stays off (on 2 cores it costs ~1 s of start-up and a
    core's worth of polling) and anything Ray does serve binds to 127.0.0.1.
    """
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # Ray workers already fork; avoid nested pools
    if os.environ.get("RAY_ADDRESS") or _inside_ray_job():
        ray.init(address="auto", log_to_driver=True)
    else:
        # address="local": never attach to some other `ray start` cluster on this machine by accident
        ray.init(address="local", include_dashboard=False, dashboard_host="127.0.0.1", log_to_driver=True,
                 runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = sys.stderr.isatty()


def _inside_ray_job() -> bool:
    return bool(os.environ.get("RAY_JOB_ID") or os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"))
