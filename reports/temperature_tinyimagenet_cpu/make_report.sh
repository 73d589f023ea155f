#!/bin/bash
# Figs. 1 and 8 at CPU scale from the sweeps of launch_s4_chain2.sh
cd /work/main
T=runs/table1_tinyimagenet_cpu/teachers/resnet20
G=runs/temperature_tinyimagenet_cpu
args=()
for kind in MLL MCMI; do
  k=$(echo $kind | tr A-Z a-z)
  for tt in 1 2 4 8; do
    d=$G/$k/temperature=${tt}_student_temperature=1
    [ -f $d/summary.json ] && args+=(--student "$kind:$tt/1=$d")
  done
  for tt in 2 4 8; do
    d=$G/$k/temperature=$tt
    [ -f $d/summary.json ] && args+=(--student "$kind:$tt=$d")
  done
done
OMP_NUM_THREADS=1 .venv/bin/mcmi analyze temperature MLL=$T/mll/last.pt MCMI=$T/mcmi/last.pt \
  --data tinyimagenet100-32px "${args[@]}" --out reports/temperature_tinyimagenet_cpu
