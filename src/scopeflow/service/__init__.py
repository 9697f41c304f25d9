"""scopeflow.service: the HPC-as-a-Service middleware (layer 4).

Settings (:mod:`~scopeflow.service.settings`), the job state machine
(:mod:`~scopeflow.service.states`), the database (:mod:`~scopeflow.service.db`, migrated by
:mod:`~scopeflow.service.migrate`) and authentication (:mod:`~scopeflow.service.auth`). Import
the submodules you need: this package imports nothing heavy on its own.
"""
