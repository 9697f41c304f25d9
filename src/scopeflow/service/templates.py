"""Command templates: the only things a job of the service can run.

An administrator registers templates in a YAML file (see ``templates.example.yaml`` next to
this module and ``docs/service-templates-files.md``). Each names a pipeline, the configuration
values a user cannot change (``fixed``), the dotted paths of the values a user may set
(``user_parameters``, with optional ``defaults``) and the scheduler resources of its jobs.

- :meth:`Template.user_schema` is the JSON Schema of the user parameters, generated from the
  pipeline's pydantic configuration model (``$ref``-free, nested objects for dotted paths).
- :meth:`Template.check_params` validates a job's parameters without touching its files (at job
  creation); :meth:`Template.build_config` validates the complete configuration against the
  pipeline's model once the inputs are uploaded and returns the configuration to write.
- :func:`build_argv` is the command of a job: an argv list, run without a shell. User input
  reaches it only as data inside the configuration file whose path it names.
"""

from __future__ import annotations

import copy
import logging
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from scopeflow.core.config import StrictModel, read_yaml_mapping
from scopeflow.core.errors import (
    ConfigError,
    FormatError,
    InputNotFoundError,
    PipelineError,
    ScopeflowError,
    UnknownNameError,
)
from scopeflow.service._template_params import (
    ROOT_FIELD,
    check_leaf,
    config_problems,
    field_at,
    flatten_against_model,
    leaf_schema,
    nest,
    uncovered_required,
)
from scopeflow.service.demo_data import DEMO_PIPELINES, DemoData

_log = logging.getLogger("scopeflow.service.templates")

__all__ = ["Resources", "Template", "TemplateRegistry", "build_argv"]

_SLUG = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_WALLTIME = re.compile(r"^(?:(\d+)-)?(\d{1,3}):([0-5]\d):([0-5]\d)$")
_MEMORY = re.compile(r"^([1-9]\d*)([KMGT]?)$")
_MEMORY_KB = {"K": 1, "M": 1024, "": 1024, "G": 1024**2, "T": 1024**3}  # Slurm: no suffix = MB


class Resources(StrictModel):
    """Scheduler resources of a template's jobs (``resources:`` in the registry)."""

    cores: int = Field(1, ge=1, le=4096, description="CPU cores of the job (Slurm --cpus-per-task)")
    memory: str | None = Field(
        None,
        pattern=_MEMORY.pattern,
        description="memory of the job: a number with K, M, G or T (Slurm --mem), e.g. '16G'",
    )
    walltime: str = Field(
        "01:00:00", pattern=_WALLTIME.pattern, description="HH:MM:SS or D-HH:MM:SS"
    )
    partition: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]+$", description="Slurm partition (default: the site's)"
    )
    gpus: int = Field(0, ge=0, le=64, description="GPUs of the job (Slurm --gpus)")
    workers: int | None = Field(
        None, ge=1, le=4096, description="scopeflow engine worker processes (default: cores)"
    )
    cluster: Literal["local", "slurm"] = Field(
        "local",
        description="where the engine's Dask workers run: 'local' (inside the job's allocation) "
        "or 'slurm' (one batch job per worker, dask-jobqueue)",
    )

    @property
    def engine_workers(self) -> int:
        """Worker processes of the scopeflow engine (``--workers``)."""
        return self.workers or self.cores

    @property
    def memory_mb(self) -> int | None:
        """:attr:`memory` in MiB (rounded up), or ``None``."""
        if self.memory is None:
            return None
        match = _MEMORY.match(self.memory)
        assert match is not None  # checked by the field's pattern
        kib = int(match.group(1)) * _MEMORY_KB[match.group(2)]
        return -(-kib // 1024)

    @property
    def walltime_seconds(self) -> int:
        """:attr:`walltime` in seconds."""
        match = _WALLTIME.match(self.walltime)
        assert match is not None
        days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
        return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


class Template(StrictModel):
    """One command template (an entry of ``templates:`` in the registry)."""

    name: str = Field(pattern=_SLUG, description="slug: lower-case letters, digits, '-', '_'")
    description: str = Field("", description="one paragraph for users")
    pipeline: str = Field(description="pipeline name (see 'scopeflow pipelines')")
    fixed: dict[str, Any] = Field(
        default_factory=dict,
        description="configuration values users cannot change; nested or dotted keys",
    )
    user_parameters: list[str] = Field(
        default_factory=list, description="dotted paths of the configuration users may set"
    )
    defaults: dict[str, Any] = Field(
        default_factory=dict,
        description="values of user parameters when the user gives none; nested or dotted keys",
    )
    resources: Resources = Field(default_factory=Resources)
    demo: DemoData | None = Field(
        None, description="synthetic input data a job may use instead of an upload (optional)"
    )

    @field_validator("fixed", "defaults", mode="after")
    @classmethod
    def _nested(cls, value: dict[str, Any]) -> dict[str, Any]:
        return nest(value)

    @model_validator(mode="after")
    def _against_pipeline(self) -> Template:
        problems = list(self._problems())
        if problems:
            raise ConfigError(f"template {self.name!r}", problems)
        return self

    # -- the pipeline --------------------------------------------------------------------------

    @property
    def config_model(self) -> type[StrictModel]:
        """The pydantic model of the pipeline's configuration."""
        from scopeflow.pipelines import get_pipeline

        model: type[StrictModel] = get_pipeline(self.pipeline).config_model  # type: ignore[assignment]
        return model

    def _problems(self) -> Iterator[tuple[str, str]]:
        try:
            model = self.config_model
        except (UnknownNameError, PipelineError) as exc:
            yield ("pipeline", str(exc))
            return
        fixed, problems = flatten_against_model(model, self.fixed, "fixed")
        yield from problems
        for path, value in fixed.items():
            if path == ROOT_FIELD:
                yield (f"fixed.{path}", "set by the service (the job's input folder)")
            else:
                yield from check_leaf(model, path, value, key=f"fixed.{path}", confine=False)
        users = self.user_parameters
        for i, path in enumerate(users):
            key = f"user_parameters[{i}]"
            if field_at(model, path) is None:
                yield (key, f"{path!r} is not a field of the {self.pipeline} configuration")
            elif path == ROOT_FIELD:
                yield (key, "'root' is set by the service (the job's input folder)")
            elif users.index(path) != i:
                yield (key, f"{path!r} is listed twice")
            for other in [*fixed, *users[:i]]:
                if other != path and _overlap(other, path):
                    what = "fixed" if other in fixed else "a user parameter"
                    yield (key, f"{path!r} overlaps {other!r}, which is {what}")
                elif other == path and other in fixed:
                    yield (key, f"{path!r} is fixed; it cannot also be set by users")
        defaults, problems = self._user_leaves(self.defaults)
        yield from ((f"defaults.{k}" if k else "defaults", m) for k, m in problems)
        for path, value in defaults.items():
            yield from check_leaf(model, path, value, key=f"defaults.{path}", confine=True)
        for path in uncovered_required(model, {*fixed, *users}):
            yield ("user_parameters", f"required field {path!r} is neither fixed nor user-set")
        if self.demo is not None and DEMO_PIPELINES[self.demo.dataset] != self.pipeline:
            yield (
                "demo.dataset",
                f"{self.demo.dataset!r} data are not for the {self.pipeline} pipeline",
            )

    # -- user parameters -----------------------------------------------------------------------

    def _user_leaves(self, params: Any) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """Map nested or dotted user parameters onto :attr:`user_parameters` paths."""
        if not isinstance(params, dict):
            return {}, [("", "expected a mapping of parameters")]
        users = set(self.user_parameters)
        leaves: dict[str, Any] = {}
        by_parts: dict[str, dict[str, Any]] = {}  # sections given as dotted keys
        problems: list[tuple[str, str]] = []

        def walk(obj: dict[Any, Any], prefix: str) -> None:
            for key, value in obj.items():
                if not isinstance(key, str) or not key:
                    problems.append((prefix, f"bad parameter name {key!r}"))
                    continue
                path = f"{prefix}.{key}" if prefix else key
                owner = next((u for u in users if path.startswith(u + ".")), None)
                if path in users:
                    if path in leaves:
                        problems.append((path, "given twice"))
                    leaves[path] = value
                elif owner is not None:  # a dotted key inside a user-settable section
                    if owner in leaves:
                        problems.append((path, "given twice"))
                    else:
                        by_parts.setdefault(owner, {})[path[len(owner) + 1 :]] = value
                elif any(u.startswith(path + ".") for u in users):
                    if isinstance(value, dict):
                        walk(value, path)
                    else:
                        problems.append((path, "expected a mapping of parameters"))
                else:
                    problems.append((path, "not a parameter users may set in this template"))

        walk(params, "")
        for owner, parts in by_parts.items():
            if owner in leaves:
                problems.append((owner, "given twice"))
                continue
            try:
                leaves[owner] = nest(parts)
            except ValueError as exc:
                problems.append((owner, str(exc)))
        return leaves, problems

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Validate a job's parameters on their own (no files are needed).

        Checks that every key is a user parameter, that each value has the type and constraints
        of its field, and that path-like values are relative paths inside the input folder.
        Rules that join several fields or need the input files are checked by
        :meth:`build_config`.

        Parameters
        ----------
        params
            Nested (``{"detection": {"sigma": 2}}``) or dotted (``{"detection.sigma": 2}``).

        Returns
        -------
        dict
            The parameters, flattened to ``{user parameter path: value}``.

        Raises
        ------
        ConfigError
            With one ``(dotted path, message)`` per problem.
        """
        leaves, problems = self._user_leaves(params)
        model = self.config_model
        for path, value in leaves.items():
            problems.extend(check_leaf(model, path, value, key=path, confine=True))
        if problems:
            raise ConfigError(f"parameters of template {self.name!r}", problems)
        return leaves

    def build_config(self, params: dict[str, Any], input_dir: Path) -> dict[str, Any]:
        """The complete, validated configuration of a job (JSON-able).

        ``fixed`` values, then ``defaults``, then the user's ``params`` are merged; ``root``
        (where the pipeline has one) is the job's input folder, and relative path fields are
        resolved against it. The result is what ``scopeflow run`` reads as its config file.

        Parameters
        ----------
        params
            The user's parameters (see :meth:`check_params`).
        input_dir
            The job's input folder (the uploaded files).

        Raises
        ------
        ConfigError
            A parameter is not allowed or not valid, or the complete configuration is not
            (e.g. its input files are missing); keys are dotted paths such as ``detection.sigma``.
        """
        leaves = self.check_params(params)
        model = self.config_model
        base = Path(input_dir).absolute()
        merged = self.merged_config(leaves)
        if ROOT_FIELD in model.model_fields:
            merged[ROOT_FIELD] = str(base)
        source_name = f"job configuration (template {self.name!r})"
        try:
            config = model.model_validate(merged, context={"base_dir": base})
        except ValidationError as exc:
            raise ConfigError(source_name, _relative(config_problems(exc), base)) from None
        except (InputNotFoundError, FormatError) as exc:
            raise ConfigError(source_name, _relative([("", str(exc))], base)) from None
        result: dict[str, Any] = config.model_dump(mode="json")
        return result

    def merged_config(self, params: dict[str, Any]) -> dict[str, Any]:
        """``fixed``, then ``defaults``, then the user's ``params`` merged, not validated.

        A user parameter replaces its whole value (a section given as a parameter is not
        merged into its default); parameters users may not set are left out. What
        :meth:`build_config` validates, and what the web UI previews.
        """
        merged: dict[str, Any] = copy.deepcopy(self.fixed)
        for source in (self._user_leaves(self.defaults)[0], self._user_leaves(params)[0]):
            for path, value in source.items():
                _set(merged, path, copy.deepcopy(value))
        return merged

    def user_schema(self) -> dict[str, Any]:
        """JSON Schema of the user parameters (an object; nested objects for dotted paths).

        Generated from the pipeline's configuration model: types, defaults (the template's
        ``defaults`` first), descriptions and constraints (minimum, exclusiveMinimum, enum …).
        It has no ``$ref``; every object forbids other properties. A parameter is required
        when its field has no default in the model and the template gives none.
        """
        model = self.config_model
        defaults = self._user_leaves(self.defaults)[0]
        root = _object_schema(self.name, self.description)
        sections: dict[str, dict[str, Any]] = {"": root}
        required: set[str] = set()
        for path in self.user_parameters:
            parts = path.split(".")
            for depth in range(1, len(parts)):
                prefix = ".".join(parts[:depth])
                if prefix not in sections:
                    field = field_at(model, prefix)
                    section = leaf_schema(model, prefix)
                    sections[prefix] = _object_schema(
                        _title(parts[depth - 1], field),
                        (field.description if field else None) or section.get("description", ""),
                    )
                    parent = sections[".".join(parts[: depth - 1])]
                    parent["properties"][parts[depth - 1]] = sections[prefix]
            field = field_at(model, path)
            schema = leaf_schema(model, path)
            schema["title"] = _title(parts[-1], field)
            if path in defaults:
                schema["default"] = defaults[path]
            elif field is not None and field.is_required():
                required.add(path)
            sections[".".join(parts[:-1])]["properties"][parts[-1]] = schema
        for path in sorted(required, key=len, reverse=True):
            parts = path.split(".")
            for depth in range(len(parts), 0, -1):
                parent = sections[".".join(parts[: depth - 1])]
                if parts[depth - 1] not in parent.setdefault("required", []):
                    parent["required"].append(parts[depth - 1])
        return root


def _object_schema(title: str, description: str) -> dict[str, Any]:
    return {
        "title": title,
        "description": description,
        "type": "object",
        "properties": {},
        "additionalProperties": False,
    }


def _title(name: str, field: Any) -> str:
    """A field's title as pydantic makes it (``min_area`` → ``Min Area``)."""
    title = getattr(field, "title", None)
    return str(title) if title else name.replace("_", " ").title()


def _overlap(a: str, b: str) -> bool:
    """True when one dotted path is the other or lies inside it."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _set(tree: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path in a nested dict (replacing what is there)."""
    *parents, last = path.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[last] = value


class TemplateRegistry:
    """The command templates of a service, by name.

    Parameters
    ----------
    templates
        Templates with distinct names.
    """

    def __init__(self, templates: list[Template] | tuple[Template, ...] = ()) -> None:
        self._by_name: dict[str, Template] = {}
        for template in templates:
            if template.name in self._by_name:
                raise ConfigError("templates", [(template.name, "defined twice")])
            self._by_name[template.name] = template

    @classmethod
    def load(cls, path: str | Path) -> TemplateRegistry:
        """Read a registry file (YAML with a ``templates:`` list).

        Raises
        ------
        InputNotFoundError
            The file does not exist.
        ConfigError
            Naming the file, the template and the field of every problem.
        """
        path = Path(path)
        data = read_yaml_mapping(path)
        problems: list[tuple[str, str]] = [
            (str(key), "unknown key (expected 'templates')") for key in data if key != "templates"
        ]
        entries = data.get("templates") or []
        if not isinstance(entries, list):
            raise ConfigError(path, [("templates", "expected a list of templates")])
        templates: list[Template] = []
        seen: set[str] = set()
        for i, entry in enumerate(entries):
            name = entry.get("name") if isinstance(entry, dict) else None
            label = f"template {name!r}" if isinstance(name, str) else f"templates[{i}]"
            try:
                template = Template.model_validate(entry)
            except ValidationError as exc:
                problems += [(f"{label}: {k}" if k else label, m) for k, m in config_problems(exc)]
                continue
            if template.name in seen:
                problems.append((label, "defined twice"))
            seen.add(template.name)
            templates.append(template)
        if problems:
            raise ConfigError(path, problems)
        return cls(templates)

    def get(self, name: str) -> Template:
        """The template called ``name``.

        Raises
        ------
        UnknownNameError
            No such template.
        """
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownNameError("template", name, self.names()) from None

    def names(self) -> list[str]:
        """Names of the templates, sorted."""
        return sorted(self._by_name)

    def __iter__(self) -> Iterator[Template]:
        return iter(self._by_name[name] for name in self.names())

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name


def _relative(problems: list[tuple[str, str]], base: Path) -> list[tuple[str, str]]:
    """``problems`` with paths inside the job's input folder relative to it.

    The messages go to the user: they name the uploaded files, not where the service keeps them.
    """
    prefix = str(base)
    return [
        (key, msg.replace(prefix + "/", "").replace(prefix, "the job's input folder"))
        for key, msg in problems
    ]


def build_argv(
    template: Template,
    config_path: Path,
    run_dir: Path,
    python: str = sys.executable,
    *,
    account: str | None = None,
) -> list[str]:
    """The command of a job: ``python -m scopeflow run PIPELINE -c CONFIG --workdir RUN …``.

    Every element comes from the template (admin-written) or from paths the service chose;
    the user's parameters reach the job only as data inside ``config_path``. Paths are made
    absolute, so no element can be read as an option. Run it with ``subprocess`` and a list
    (never ``shell=True``) or quote each element into a batch script.

    Parameters
    ----------
    template
        The job's template.
    config_path
        The job's configuration file (written from :meth:`Template.build_config`).
    run_dir
        The run directory (``--workdir``); running again on it resumes.
    python
        The Python interpreter that has scopeflow installed.
    account
        Batch account of the engine's worker jobs (``cluster: slurm`` only).
    """
    res = template.resources
    argv = [
        python,
        "-m",
        "scopeflow",
        "run",
        template.pipeline,
        "--config",
        str(Path(config_path).absolute()),
        "--workdir",
        str(Path(run_dir).absolute()),
        "--cluster",
        res.cluster,
        "--workers",
        str(res.engine_workers),
    ]
    if res.cluster == "slurm":
        argv += ["--cores", str(res.cores), "--walltime", res.walltime]
        if res.memory:
            argv += ["--memory", f"{res.memory_mb}MB"]
        if res.partition:
            argv += ["--queue", res.partition]
        if account:
            argv += ["--account", account]
    argv.append("--no-progress")
    return argv


class TemplateCache:
    """The template registry of a file, loaded again when the file changes.

    A file that cannot be read or loaded is reported once (logged as an error); the registry
    loaded before it, if any, stays in use.

    Parameters
    ----------
    path
        The registry file (``settings.templates_path``).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._registry: TemplateRegistry | None = None
        self._stamp: tuple[int, int] | None = None
        self._problem: str | None = None
        self._lock = threading.Lock()

    def get(self) -> TemplateRegistry | None:
        """The registry, or None while there is none that loads.

        Threads that ask while the file is (re)loaded wait for that load: none of them gets
        the registry from before it (or none at all, on the first load).
        """
        try:
            st = self.path.stat()
        except OSError as exc:
            with self._lock:
                self._report(f"no template registry at {self.path} ({exc.strerror}): no job is run")
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._registry = TemplateRegistry.load(self.path)
                except ScopeflowError as exc:
                    self._report(f"cannot load the template registry: {exc}")
                else:
                    self._problem = None
                    names = ", ".join(self._registry.names())
                    _log.info("templates from %s: %s", self.path, names)
                self._stamp = stamp  # after the load: a failed one is not tried again
            return self._registry

    def _report(self, text: str) -> None:
        if text != self._problem:
            _log.error("%s", text)
            self._problem = text
