"""``wearwatch up``: the whole plant on one machine — warm-up, supervised processes, resume."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path
from typing import Any

import typer

from wearwatch.cli.errors import fail, finite


def _paragraphs(text: str) -> str:
    """One line per paragraph: the help renderer wraps them to the terminal itself."""
    return "\n\n".join(" ".join(p.split()) for p in text.split("\n\n"))


HELP = _paragraphs(
    """Bring up the live platform: both twins, both pipelines, the API and the dashboard.

Everything runs under one supervisor on the embedded log in the data directory (default
var/): a crashed process is restarted and reported, one Ctrl-C stops them all cleanly
(workers take a final checkpoint, twins record where they stopped), and `wearwatch up` again
resumes the run where it stopped (its parameters are kept in <data_dir>/run/up.json). On
first start the anomaly and risk models are trained from a short accelerated run of another
plant (~25 s); RUL trains on NASA C-MAPSS FD001 in the background when WEARWATCH_CMAPSS_DIR
has it.

Why these defaults: rotating machines wear over hours to days (a bearing's P-F interval is
1-6 days in the twin's compressed time), so the fleet runs at --speed 3600, a plant hour per
second, on a 30 s tick with 5- and 30-minute windows: a bearing fault is alarmed hours of
plant time before it fails, within a minute or two of yours, and 20 machines see a failure
about every 20 s. A mill pass takes seconds, so the mill runs at --mill-speed 30 (about a
pass a second): slow enough to follow a roll shock pass by pass (physics' error jumps, the
router clips the model to its band for a few passes, the served force stays close) and a
maintenance under a model that learnt the worn roll; its first two plant hours go out at
once, so the model serves from the first minute."""
)


def register(app: typer.Typer) -> None:
    @app.command("up", help=HELP)
    def up(
        duration: str = typer.Option(
            None, help="stop after this much wall time, e.g. 90s, 10m (default: until Ctrl-C)"
        ),
        speed: float = typer.Option(
            None,
            callback=finite(low=1.0, high=1e6),
            help="fleet twin: plant seconds per wall second (default 3600)",
        ),
        mill_speed: float = typer.Option(
            None,
            "--mill-speed",
            callback=finite(low=0.1, high=1e5),
            help="mill twin: plant seconds per wall second (default 30)",
        ),
        headless: bool = typer.Option(
            None, "--headless/--dashboard", help="API only, no dashboard (default: with it)"
        ),
        port: int = typer.Option(None, min=1, max=65535, help="API port (default: setting)"),
        machines: int = typer.Option(
            None, min=1, max=1000, help="machines in the fleet (default 20)"
        ),
        seed: int = typer.Option(None, help="seed of the twins (default: the seed setting)"),
        fresh: bool = typer.Option(
            False, help="start a new run: remove the log, models and run state first"
        ),
    ) -> None:
        from rich.console import Console

        from wearwatch.api.auth import load_or_create_token
        from wearwatch.cli.twin import parse_duration
        from wearwatch.config import get_settings
        from wearwatch.launch.models import ModelWatch
        from wearwatch.launch.run import (
            RunPaths,
            load_params,
            merge_params,
            platform_children,
            rul_training,
            save_params,
        )
        from wearwatch.launch.supervisor import Supervisor
        from wearwatch.launch.warmup import RUL_FAMILY, rul_plan
        from wearwatch.learn.rul.data import default_data_dir

        started = time.monotonic()
        settings = get_settings()
        console = Console(highlight=False)
        try:
            duration_s = None if duration is None else parse_duration(duration)
        except ValueError as exc:
            fail(f"--duration: {exc}")
        paths = RunPaths(settings.data_dir)
        if not settings.bus_url.startswith("sqlite:///"):
            fail(f"bus={settings.bus_url}: `wearwatch up` runs on the embedded log (sqlite:///…)")
        log_file = Path(settings.bus_url.removeprefix("sqlite:///"))
        if fresh:
            _remove_run(paths, log_file, settings.registry_dir)
        try:
            saved = load_params(paths.params)
        except (ValueError, TypeError, OSError) as exc:
            fail(f"{paths.params}: unreadable ({exc}); add --fresh to start a new run")
        flags: dict[str, Any] = {
            "speed": speed,
            "mill_speed": mill_speed,
            "machines": machines,
            # Unset flags keep the saved run's values; a new run takes the settings'.
            "seed": seed if seed is not None or saved else settings.seed,
            "port": port if port is not None or saved else settings.api_port,
            "host": settings.api_host,
            "headless": headless,
        }
        try:
            params = merge_params(saved, flags)
        except ValueError as exc:
            fail(str(exc))
        save_params(paths.params, params)
        settings.data_dir.mkdir(parents=True, exist_ok=True)

        if saved is not None:
            console.print(f"resuming the run in {paths.run_dir} (--fresh starts a new one)")
        try:
            _warm_up_if_needed(console, params, settings)
        except KeyboardInterrupt:
            fail("interrupted during the warm-up: nothing was started; `wearwatch up` retries", 130)

        children = platform_children(params, paths, settings.registry_dir, serve=True)
        rul = rul_plan(settings.registry_dir, default_data_dir(settings.cmapss_dir))
        if rul == "train":
            children.append(rul_training(params.seed))
            console.print(
                "RUL: training on NASA C-MAPSS FD001 in the background "
                f"({paths.log_dir / 'train-rul.log'}); served once registered"
            )
        elif rul != "served":
            console.print(rul)
        supervisor = Supervisor(children, log_dir=paths.log_dir, report=console.print)

        def stop(signum: int, frame: object) -> None:
            supervisor.request_stop()

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        token = load_or_create_token(settings.data_dir, settings.api_token)
        supervisor.start()
        _print_urls(console, params, token, paths)
        watch = ModelWatch(settings.registry_dir, supervisor, "worker-fleet")
        base = f"http://{params.host}:{params.port}"
        ready = _Readiness(f"{base}/health", console, started)
        serve_rul = _ServeWhenTrained(supervisor, f"{base}/models/{RUL_FAMILY}/reload", token)

        def tick() -> None:
            watch.check()
            ready.check()
            if rul == "train":
                serve_rul.check(console)

        supervisor.run(duration_s, tick=tick)
        console.print(
            "stopped: every process ended; `wearwatch up` resumes this run "
            f"(logs in {paths.log_dir})"
        )


def _remove_run(paths: Any, log_file: Path, registry_dir: Path) -> None:
    """A new run: the log (with its key and SQLite side files), models and run state go."""
    for path in (paths.run_dir, registry_dir):
        shutil.rmtree(path, ignore_errors=True)
    for suffix in ("", "-wal", "-shm", ".key"):
        Path(f"{log_file}{suffix}").unlink(missing_ok=True)


def _warm_up_if_needed(console: Any, params: Any, settings: Any) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from wearwatch.launch.warmup import WarmupPlan, needs_warmup, warm_up

    if not needs_warmup(settings.registry_dir):
        return
    plan = WarmupPlan(
        machines=params.machines,
        seed=params.seed + 1000,
        tick_s=params.tick_s,
        windows_s=params.windows_s,
        grace_s=params.grace_s,
        watermark_delay_s=params.watermark_delay_s,
    )
    console.print(
        f"first start: training the initial models in {settings.registry_dir} "
        f"(a {plan.machines}-machine fleet twin for {plan.effective_days:g} days, seed "
        f"{plan.seed}: another plant than the one you will watch)"
    )
    bar = Progress(
        TextColumn("warm-up"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
    )
    with bar:
        task = bar.add_task("", total=1.0)

        def progress(stage: str, fraction: float) -> None:
            bar.update(task, completed=fraction, description=stage)

        result = warm_up(settings.registry_dir, plan, progress)
    auc = "–" if result.risk_pr_auc is None else f"{result.risk_pr_auc:.2f}"
    figures = (
        f"{result.windows:,} windows, {result.positive_windows:,} of them within 24 h of a "
        f"failure; risk PR-AUC {auc} on held-out machines"
    )
    console.print(
        f"warm-up: registered {', '.join(result.registered.values())} ({figures}) "
        f"in {result.seconds['total']:g} s"
    )


def _print_urls(console: Any, params: Any, token: str, paths: Any) -> None:
    base = f"http://{params.host}:{params.port}"
    if not params.headless:
        console.print(f"dashboard  {base}/?token={token}")
    console.print(f"API docs   {base}/docs")
    console.print(f"metrics    {base}/metrics")
    console.print(f"token      {token}  (Authorization: Bearer …, for the control endpoints)")
    console.print(f"logs       {paths.log_dir}    Ctrl-C stops everything")


class _Readiness:
    """Say once when the API first answers (the dashboard is on the same server)."""

    def __init__(self, url: str, console: Any, started: float) -> None:
        self.url, self.console, self.started = url, console, started
        self.done = False

    def check(self) -> None:
        import urllib.error
        import urllib.request

        if self.done:
            return
        try:
            with urllib.request.urlopen(self.url, timeout=0.5):
                pass
        except urllib.error.HTTPError:
            pass  # it answers (503: a component is not up yet)
        except (OSError, ValueError):
            return
        self.done = True
        self.console.print(
            f"ready: the API answers, {time.monotonic() - self.started:.0f} s after start"
        )


class _ServeWhenTrained:
    """Once the background RUL training has registered its model, have the API serve it
    (``POST /models/{family}/reload``; retried until the API answers)."""

    def __init__(self, supervisor: Any, url: str, token: str) -> None:
        self.supervisor, self.url, self.token = supervisor, url, token
        self.done = False

    def check(self, console: Any) -> None:
        import urllib.request

        if self.done or self.supervisor.finished("train-rul") != 0:
            return
        request = urllib.request.Request(
            self.url, method="POST", headers={"Authorization": f"Bearer {self.token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=5.0) as response:
                served = response.read().decode()
        except OSError:
            return
        self.done = True
        console.print(f"RUL: the API now serves it ({served})")
