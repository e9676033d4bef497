# gnuplot -e "dir='/tmp/kf-e2e/dat'; out='doc/plots'" examples/tools/bench/plot.gp
set terminal pngcairo size 900,600 noenhanced
set logscale xy 2
set xlabel "context (tokens)"
set ylabel "decode step (ms): attention + library"
set key top left
set grid
do for [s in "llama3-8b bundled"] {
  set output sprintf("%s/perf-decode-%s.png", out, s)
  set title sprintf("Decode step vs context, %s shape, 1 thread (f32 solid, f16 dashed)", s)
  f32 = sprintf("%s/decode-%s-f32-1.dat", dir, s)
  f16 = sprintf("%s/decode-%s-f16-1.dat", dir, s)
  plot f32 u 1:2 w lp lw 2 lc 1 t "full f32", \
       f32 u 1:3 w lp lw 2 lc 2 t "budget 0.7 f32", \
       f32 u 1:4 w lp lw 2 lc 3 t "budget 0.5 f32", \
       f32 u 1:5 w lp lw 2 lc 4 t "budget 0.3 f32", \
       f16 u 1:2 w lp dt 2 lc 1 t "full f16", \
       f16 u 1:3 w lp dt 2 lc 2 t "0.7 f16", \
       f16 u 1:4 w lp dt 2 lc 3 t "0.5 f16", \
       f16 u 1:5 w lp dt 2 lc 4 t "0.3 f16"
}

# every policy at budget 0.5 (llama3-8b, f32, 1 thread)
set output sprintf("%s/perf-decode-policies.png", out)
set title "Decode step vs context per policy, llama3-8b shape, f32, 1 thread, budget 0.5"
pol = sprintf("%s/decode-policies.dat", dir)
plot pol u 1:2 w lp lw 2 lc 1 t "full cache", \
     pol u 1:3 w lp lw 2 lc 3 t "keyformer", \
     pol u 1:4 w lp lw 2 lc 4 t "h2o", \
     pol u 1:5 w lp lw 2 lc 2 t "window", \
     pol u 1:6 w lp dt 2 lw 2 lc 7 t "sinks"
