"""One conformance run: conform's own phases, then schemathesis' phases, into one `Report`.

1. preflight: the service answers and takes the key, or the run stops (exit 2);
2. access: a key is required, and the 401 body is the relay's (every run, free);
3. near_misses (generation allowed): each documented rule broken once, refused for free;
4. scenarios (generation allowed): a few tasks followed to their end, pictures checked, and
   key isolation with ``--second-api-key``;
5. schemathesis' phases (examples, coverage, fuzzing, stateful) with what is left of the budget.

A run that got not one meaningful answer checked nothing, and says so (exit 2); so does one
whose key has no credit for its first paid step. A check that could not tell (a 429 that
outlasted its retries, a scenario task that failed) is an error, and so is a phase whose
answers were mostly refusals (`evidence`): never a pass.
"""

from __future__ import annotations

import time
import tomllib
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..contract import contracts_dir
from ..core.catalogue import Catalogue
from .access import BASE_URL_HINT, check_auth, check_isolation, preflight
from .budget import TaskBudget
from .checks import MARKER, POLL, SUBMIT, applies, register
from .client import Client, RunTimeUp, time_up
from .deviations import Report
from .evidence import CannotRun, advice, refused_phase
from .explain import Explainer
from .harness import caused_by_cap, contract_of, install_hooks, restrict_to_model
from .lifecycle import LIFECYCLE_CHECKS
from .near_misses import NEAR_MISS_CHECKS, near_misses, send_near_misses
from .options import ALL_PHASES, ConformOptions
from .pictures import PICTURE_CHECKS
from .progress import Progress
from .samples import excerpt, failure_sample
from .scenarios import PICTURE, ScenarioRunner, plan
from .validation import Validator

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
#: schemathesis' own set-up phases: printed only when they fail.
_SETUP_PHASES = ("probing", "schema_analysis", "auth_bootstrap")


def run_contract(
    options: ConformOptions, on_progress: Callable[[str], None] | None = None
) -> Report:
    """Run the contract against ``options.app`` or ``options.base_url`` and report deviations."""
    started = time.monotonic()
    report = Report(target=options.target)
    progress = Progress(on_progress, options.progress_every)
    contract = contract_of(options)
    contract[MARKER] = True
    register()
    budget = TaskBudget(options.max_tasks)
    client = Client(options, report, progress.tick)
    progress.start("preflight")
    try:
        validator = Validator(contract, options, report)
        client.start_run_clock()
        report.could_not_run = preflight(client, validator, report)
        if report.could_not_run is None:
            _own_phases(options, client, validator, report, budget, progress)
            _schemathesis_phases(options, contract, report, budget, progress, client.out_of_time)
    except CannotRun as exc:
        report.could_not_run = str(exc)
    except RunTimeUp as exc:  # before any phase: the preflight's own requests
        if report.meaningful == 0:
            report.could_not_run = str(exc)  # nothing was checked at all
        elif str(exc) not in report.errors:
            report.error(str(exc))
    finally:
        client.close()
        report.tasks_created = budget.spent
        report.elapsed = time.monotonic() - started
    if report.could_not_run is None and report.meaningful == 0:
        by_status = Counter[int]()
        for (_, status), n in report.statuses.items():
            by_status[status] += n
        seen = ", ".join(f"{n} x {s}" for s, n in by_status.most_common()) or "none"
        hint = ""
        # Keys and rate limits aside, only "not found": the task routes are not there.
        answers = {s for _, s in report.statuses} - {401, 403, 429}
        if answers == {404} or (report.routes_unproven and answers <= {400, 404, 405}):
            hint = f"; {BASE_URL_HINT}"
        report.could_not_run = (
            f"no successful exchange: not one of {report.requests} requests got an answer "
            f"that could be checked (statuses: {seen}){hint}"
        )
    return report


def _counts(report: Report) -> tuple[int, int]:
    """(deviations, errors) so far; a check that could not tell counts as an error."""
    unchecked = sum(len(whys) for whys in report.unchecked.values())
    return sum(d.count for d in report.deviations.values()), len(report.errors) + unchecked


@contextmanager
def _phase(name: str, report: Report, progress: Progress) -> Iterator[None]:
    before = _counts(report)
    progress.start(name)
    report.current_phase = name
    try:
        yield
    except RunTimeUp as exc:  # said once, not once per phase that could not start
        if str(exc) not in report.errors:
            report.error(str(exc))
    except CannotRun:
        raise  # run_contract says why
    except Exception as exc:  # whatever broke, the run says so and goes on
        where = traceback.extract_tb(exc.__traceback__)[-1]
        report.error(
            f"the {name} phase broke: {type(exc).__name__}: {exc} "
            f"({Path(where.filename).name}:{where.lineno})"
        )
    after = _counts(report)
    status = "error" if after[1] > before[1] else "failure" if after[0] > before[0] else "success"
    report.phases[name] = status
    progress.finish(name, status)


def _own_phases(
    options: ConformOptions,
    client: Client,
    validator: Validator,
    report: Report,
    budget: TaskBudget,
    progress: Progress,
) -> None:
    if not (validator.has(SUBMIT) and validator.has(POLL)):
        return  # another contract (the emulator's own): only schemathesis' phases apply
    with _phase("access", report, progress):
        check_auth(client, validator, report)
    if not options.allow_generation:
        why = "needs --allow-generation (it submits tasks)"
        polls = ("key_isolation", "task_pollable", "task_finishes", *LIFECYCLE_CHECKS)
        for check in (*NEAR_MISS_CHECKS, *polls):
            report.cannot_check(check, SUBMIT if check in NEAR_MISS_CHECKS else POLL, why)
        for check in PICTURE_CHECKS:
            report.cannot_check(check, PICTURE, why)
        return
    catalogue = Catalogue.load()
    with _phase("near_misses", report, progress):
        send_near_misses(near_misses(catalogue, options), client, validator, report, budget)
    with _phase("scenarios", report, progress):
        runner = ScenarioRunner(options, client, validator, report, budget, catalogue)
        runner.run(plan(options, catalogue))
        if runner.created:
            check_isolation(client, validator, report, runner.created[0])
        else:
            report.cannot_check("key_isolation", POLL, "no task was created")


# -- schemathesis' phases --------------------------------------------------------------------------
def _settings(options: ConformOptions, budget: TaskBudget) -> dict[str, Any]:
    """schemathesis settings: contracts/schemathesis.toml, then this run's choices."""
    path = contracts_dir() / "schemathesis.toml"
    data: dict[str, Any] = tomllib.loads(path.read_text("utf-8")) if path.exists() else {}
    chosen = set(options.phases)
    if not options.allow_generation or budget.left == 0:
        chosen.discard("stateful")  # its links start at a submission, which is not sent
    phases = {name: {"enabled": name in chosen} for name in ALL_PHASES}
    checks: dict[str, Any] = {}
    if budget.limit:
        # ignored_auth re-sends a submission without the run's hooks: a task the budget would
        # not see. The access phase checks the key on polls, and a near miss on submissions.
        checks["ignored_auth"] = {"enabled": False}
    if options.max_response_time is not None:
        checks["max_response_time"] = options.max_response_time
    data.update(
        {
            "seed": options.seed,
            "workers": options.workers,
            "request-timeout": options.request_timeout,
            "phases": _merge(data.get("phases", {}), phases),
            "checks": _merge(data.get("checks", {}), checks),
            "generation": _merge(
                data.get("generation", {}),
                {
                    "max-examples": options.max_examples,
                    "mode": "all" if options.negative else "positive",
                },
            ),
        }
    )
    if options.rate_limit:
        data["rate-limit"] = options.rate_limit
    if options.api_key:
        data["headers"] = {**data.get("headers", {}), "Authorization": f"Bearer {options.api_key}"}
    return _merge(data, options.overrides)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _schemathesis_phases(
    options: ConformOptions,
    contract: dict[str, Any],
    report: Report,
    budget: TaskBudget,
    progress: Progress,
    out_of_time: Callable[[], bool] = lambda: False,
) -> None:
    import schemathesis
    from schemathesis.config import SchemathesisConfig

    from .privates import execute, global_hook

    if out_of_time():
        if time_up(options) not in report.errors:
            report.error(time_up(options))
        return
    config = SchemathesisConfig.from_dict(_settings(options, budget))
    schemas = contract.get("components", {}).get("schemas", {})
    if not options.all_models and "SubmitRequest" in schemas:
        contract = restrict_to_model(contract, options.model)
    schema = schemathesis.openapi.from_dict(contract, config=config)
    if options.app is not None:
        schema.app = options.app
        schema.config.update(base_url="http://127.0.0.1")
    else:
        schema.config.update(base_url=(options.base_url or "").rstrip("/"))
    if not options.allow_generation:
        # Read-only: nothing that creates, changes or deletes anything is sent.
        schema = schema.exclude(method=list(WRITE_METHODS))  # type: ignore[assignment]
    elif budget.left == 0:
        schema = schema.exclude(method="POST", path="/v1/images/tasks")  # type: ignore[assignment]
        report.skipped.append(
            "schemathesis' submissions: the task budget went to the near misses and scenarios"
        )
    before_call, capped = install_hooks(schema, budget, report, progress.tick)
    with global_hook(before_call):
        stopped = _execute(
            execute(schema), report, progress, Explainer(contract), capped, out_of_time
        )
    if stopped and time_up(options) not in report.errors:
        report.error(time_up(options))


def _execute(
    run: Iterable[Any],
    report: Report,
    progress: Progress,
    explainer: Explainer,
    capped: Counter[str],
    out_of_time: Callable[[], bool] = lambda: False,
) -> bool:
    """Read the run's events into ``report``; True when it was stopped for the run's time.

    schemathesis' ``max-time`` is not used: it turns the phases into a loop that fills it."""
    from .privates import Status, events, stop

    errors: dict[str, int] = {}
    stopped = False
    for event in run:
        if not stopped and out_of_time():
            stopped = True
            stop(run)  # the stream ends after its current test scenario
        if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
            phase = getattr(getattr(event, "phase", None), "value", "fuzzing")
            collect(event.recorder, report, explainer, str(phase))
        elif isinstance(event, events.NonFatalError):
            if not caused_by_cap(event.value):  # those are counted by the hook
                phase = event.phase.value if event.phase is not None else "?"
                errors[phase] = errors.get(phase, 0) + 1
                report.error(f"{event.label}: {_error_text(event)}")
        elif isinstance(event, events.FatalError):
            report.error(f"schemathesis stopped: {event.exception}")
        elif isinstance(event, events.Interrupted):
            report.error("the run was interrupted")
        elif isinstance(event, events.PhaseStarted):
            progress.start(event.phase.name.value)
        elif isinstance(event, events.PhaseFinished):
            name = event.phase.name.value
            status = event.status
            text, note = status.value, ""
            if capped.get(name):
                note = f"{capped[name]} submission(s) not sent: task budget spent"
            if status == Status.ERROR and not errors.get(name):
                if capped.get(name):
                    text = "success"  # only submissions the budget could not pay for
                else:
                    report.error(f"schemathesis' {name} phase ended in error without a cause")
            if name in _SETUP_PHASES and status in (Status.SUCCESS, Status.SKIP):
                continue
            refusals = report.refusals(name)
            # Judged per operation: polls answered in plenty must not hide submissions that
            # were all refused (schemathesis does not retry a 429).
            blind = False
            for operation, (answers, refused) in sorted(report.operation_refusals(name).items()):
                why = refused_phase(answers, refused)
                if why is not None:
                    report.error(
                        f"schemathesis' {name} phase could not check {operation}: {why}; "
                        f"{advice(refused)}"
                    )
                    blind = True
            if blind:
                text = "error"
            elif refusals:
                note = "; ".join(
                    filter(
                        None,
                        [note, f"not judged: {sum(refusals.values())} refusal(s) (429, no credit)"],
                    )
                )
            if name in _SETUP_PHASES:
                report.error(f"schemathesis' {name} phase: {text}")
            report.phases[name] = text
            progress.finish(name, text, note)
    return stopped


def collect(recorder: Any, report: Report, explainer: Explainer, phase: str) -> None:
    """Results of one finished schemathesis scenario into ``report``."""
    for case_id, interaction in recorder.interactions.items():
        node = recorder.cases.get(case_id)
        if node is not None and interaction.response is not None:
            label = node.value.operation.label
            report.phase_statuses[(phase, label, interaction.response.status_code)] += 1
    for case_id, checks in recorder.checks.items():
        node = recorder.cases.get(case_id)
        operation = node.value.operation.label if node is not None else "?"
        for check in checks:
            info = check.failure_info
            if info is None:
                if applies(check.name, operation):
                    report.passed(check.name, operation)
                continue
            interaction = recorder.interactions.get(case_id)
            response = interaction.response if interaction is not None else None
            report.add(
                check.name,
                operation,
                failure_sample(
                    check.name,
                    operation,
                    info.failure,
                    response.status_code if response is not None else None,
                    (response.content or b"") if response is not None else b"",
                    explainer,
                    request=info.code_sample,
                    response=excerpt(response),
                ),
            )


def _error_text(event: Any) -> str:
    text: str = event.info.format()
    # Keep the head (what happened) and the tail (where, and how to reproduce).
    lines = [line for line in text.strip().splitlines() if "--url" not in line]
    return "\n".join(lines if len(lines) <= 24 else [*lines[:6], "...", *lines[-16:]])
