#!/bin/bash
#SBATCH --job-name=burgers-operator
#SBATCH --time=02:00:00
#SBATCH --mem=16G
#SBATCH --cpus-per-task=8
#SBATCH --ntasks=1
#SBATCH --gres=gpu:1
#SBATCH --partition=gpu
#SBATCH --output=/shared/vl/slurm/default/burgers-20261124-080000-ab12/operator/slurm-%j.out
#SBATCH --chdir=/shared/repo
#SBATCH --kill-on-invalid-dep=yes
set -o pipefail
export WANDB_RUN_GROUP=burgers-20261124-080000-ab12
export VL_PROFILE='it'"'"'s $(not) run'
export VL_STAGE=operator
export PYTHONPATH=/shared/repo/src:/shared/repo${PYTHONPATH:+:$PYTHONPATH}
echo "[vast-launch] slurm job $SLURM_JOB_ID stage operator: start at=$(date +%s.%N) on $(hostname)"
python -m ups.train --stage operator --out "$VL_OUT"
rc=$?
echo "[vast-launch] slurm job $SLURM_JOB_ID stage operator: exit $rc at=$(date +%s.%N)"
exit $rc
