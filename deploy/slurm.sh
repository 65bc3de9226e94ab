#!/usr/bin/env bash
# memsweep on a SLURM cluster, following Ray's documented recipe (docs.ray.io, "Deploying on
# Slurm"): one Ray head on the first node of the allocation, one Ray worker per other node, then
# the sweep's driver on the head. Submit from the project's root folder, after creating the venv
# on the shared file system (python3.11 -m venv .venv && .venv/bin/pip install -c
# deploy/constraints.txt -e '.[train]'):
#   sbatch deploy/slurm.sh fig1-difficulty --gpus-per-trial 0.25 --results /shared/memsweep
#SBATCH --job-name=memsweep
#SBATCH --nodes=3
#SBATCH --exclusive
#SBATCH --tasks-per-node=1
#SBATCH --cpus-per-task=16
#SBATCH --gpus-per-task=1
#SBATCH --time=04:00:00
set -euo pipefail
preset=${1:?usage: sbatch deploy/slurm.sh PRESET [sweep launch options]}
shift
source .venv/bin/activate

nodes=($(scontrol show hostnames "$SLURM_JOB_NODELIST"))
head=${nodes[0]}
head_ip=$(srun --nodes=1 --ntasks=1 -w "$head" hostname --ip-address | awk '{print $1}')
port=6379
export RAY_ADDRESS="$head_ip:$port"

echo "memsweep: Ray head on $head ($RAY_ADDRESS)"
srun --nodes=1 --ntasks=1 -w "$head" \
    ray start --head --node-ip-address="$head_ip" --port=$port --dashboard-host=127.0.0.1 \
    --num-cpus="$SLURM_CPUS_PER_TASK" --num-gpus="${SLURM_GPUS_PER_TASK:-0}" --block &
sleep 10

for node in "${nodes[@]:1}"; do
    echo "memsweep: Ray worker on $node"
    srun --nodes=1 --ntasks=1 -w "$node" \
        ray start --address="$RAY_ADDRESS" \
        --num-cpus="$SLURM_CPUS_PER_TASK" --num-gpus="${SLURM_GPUS_PER_TASK:-0}" --block &
    sleep 5
done

sweep launch "$preset" --address "$RAY_ADDRESS" "$@"
