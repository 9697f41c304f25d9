# shellcheck shell=bash
# Environment for running OpenMPI (Debian 12's 4.1) on one machine, as root,
# in a container, with more ranks than cores - as CI and the integration tests
# do (`mpirun -np 4 .venv/bin/python script.py` on a 2-core machine).
# Source it; it only exports variables:
#
#   source scripts/mpi-env.sh
#   mpirun -np 4 .venv/bin/python my_dask_mpi_script.py
#
# tests/integration/conftest.py reads this file too, so tests and by-hand runs
# use the same settings.
#
# OMPI_ALLOW_RUN_AS_ROOT{,_CONFIRM}: mpirun refuses to run as root without both.
export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# same as `mpirun --oversubscribe`: allow more ranks than cores (4 on 2 cores)
export OMPI_MCA_rmaps_base_oversubscribe=1
# launch ranks on this machine only; no ssh/rsh needed (or looked for)
export OMPI_MCA_plm=isolated
# shared-memory transport without CMA (process_vm_readv), which containers
# without CAP_SYS_PTRACE forbid ("Read -1, expected ..., errno = 1")
export OMPI_MCA_btl_vader_single_copy_mechanism=none
