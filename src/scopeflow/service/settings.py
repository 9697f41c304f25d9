"""Settings of the service: where its data live, its database, tokens, quotas, accounts.

Read from a YAML file (:meth:`ServiceSettings.from_file`), overridden by environment variables
(``SCOPEFLOW_DATA_DIR``, ``SCOPEFLOW_DB_URL``) and then by explicit values such as command-line
options (:meth:`ServiceSettings.load`). Relative paths in a file are taken from the file's folder,
other relative paths from the current directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PositiveInt

from scopeflow.core.config import (
    OutputPath,
    StrictModel,
    read_yaml_mapping,
    validate_config,
)

__all__ = ["ENV_VARS", "AccountMapping", "ServiceSettings"]

ENV_VARS: Mapping[str, str] = {
    "SCOPEFLOW_DATA_DIR": "data_dir",
    "SCOPEFLOW_DB_URL": "db_url",
}
"""Environment variables read by :meth:`ServiceSettings.load`, and the setting each sets."""

_GIB = 1024**3
_PATH_FIELDS = frozenset({"data_dir", "templates_file"})


class AccountMapping(StrictModel):
    """Where the jobs of a user (or of a group) run on a Slurm cluster; unset = Slurm's default."""

    account: str | None = Field(default=None, description="Slurm account (--account).")
    partition: str | None = Field(default=None, description="Slurm partition (--partition).")
    qos: str | None = Field(default=None, description="Slurm quality of service (--qos).")


class ServiceSettings(StrictModel):
    """Settings of one scopeflow service (API and worker share them)."""

    data_dir: OutputPath = Field(
        default=Path("scopeflow-data"),
        validate_default=True,
        description="Folder of the service's data: the SQLite database, jobs, templates.",
    )
    db_url: str | None = Field(
        default=None,
        description="SQLAlchemy database URL, e.g. postgresql+psycopg://user:pw@host/db. "
        "Default: SQLite file scopeflow.db in data_dir.",
    )
    token_ttl_s: PositiveInt = Field(
        default=12 * 3600, description="Lifetime of a login (session) token, in seconds."
    )
    quota_bytes: PositiveInt = Field(
        default=50 * _GIB, description="Bytes of job files (inputs and results) a user may hold."
    )
    scheduler: Literal["local", "slurm"] = Field(
        default="local", description="Where jobs run: detached local processes or Slurm."
    )
    templates_file: OutputPath | None = Field(
        default=None,
        description="YAML registry of command templates. Default: templates.yaml in data_dir.",
    )
    accounts: dict[str, AccountMapping] = Field(
        default_factory=dict,
        description="User or group name -> Slurm account, partition and QoS. A user's own "
        "entry wins over their group's.",
    )
    default_account: AccountMapping | None = Field(
        default=None, description="Mapping for users with neither a user nor a group entry."
    )

    @property
    def database_url(self) -> str:
        """The database URL: :attr:`db_url`, or the SQLite file ``data_dir/scopeflow.db``."""
        if self.db_url:
            return self.db_url
        return f"sqlite:///{(self.data_dir / 'scopeflow.db').as_posix()}"

    @property
    def jobs_dir(self) -> Path:
        """Folder holding one directory per job (``data_dir/jobs``)."""
        return self.data_dir / "jobs"

    @property
    def templates_path(self) -> Path:
        """The template registry: :attr:`templates_file`, or ``data_dir/templates.yaml``."""
        return self.templates_file or self.data_dir / "templates.yaml"

    def account_for(self, user: str, group: str | None = None) -> AccountMapping | None:
        """The cluster account mapping of a user: their own, else their group's, else the default.

        Parameters
        ----------
        user
            The user's name.
        group
            The user's group (project), if any.
        """
        if user in self.accounts:
            return self.accounts[user]
        if group is not None and group in self.accounts:
            return self.accounts[group]
        return self.default_account

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> ServiceSettings:
        """Read settings from a YAML file; ``overrides`` (not None) replace its values.

        Raises
        ------
        InputNotFoundError
            The file does not exist.
        ConfigError
            The file is not valid YAML or has unknown or invalid settings.
        """
        path = Path(path)
        data = read_yaml_mapping(path)
        data.update({k: v for k, v in overrides.items() if v is not None})
        return validate_config(cls, data, source=path, base_dir=path.parent.absolute())

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> ServiceSettings:
        """Settings from a file (optional), then environment variables, then ``overrides``.

        Parameters
        ----------
        path
            A YAML settings file, or None for the defaults.
        environ
            Environment to read :data:`ENV_VARS` from (default: ``os.environ``).
        **overrides
            Settings given explicitly (e.g. command-line options); None values are ignored.

        Raises
        ------
        ConfigError
            A setting is invalid.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {f: env[var] for var, f in ENV_VARS.items() if env.get(var)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        for key in _PATH_FIELDS & values.keys():  # relative to the current directory, not the file
            values[key] = Path(values[key]).expanduser().absolute()
        if path is not None:
            return cls.from_file(path, **values)
        return validate_config(cls, values, source="service settings", base_dir=None)
