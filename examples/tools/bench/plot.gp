# gnuplot -e "dir='/tmp/kf-e2e/dat'; out='doc/plots'; cpu='AMD EPYC Zen 3, AVX2'" examples/tools/bench/plot.gp
# dir: summarize.py --dat output (run.sh's and defaults.sh's JSON lines).
if (!exists("cpu")) cpu = ""
set terminal pngcairo size 900,600 noenhanced
set logscale xy 2
set xlabel "context (tokens)"
set ylabel "decode step (ms): attention + library"
set key top left
set grid
do for [s in "llama3-8b bundled"] {
  set output sprintf("%s/perf-decode-%s.png", out, s)
  set title sprintf("Decode step vs context at the defaults, %s shape, 1 thread (f32)\n%s", s, cpu)
  f32 = sprintf("%s/decode-%s-f32-1.dat", dir, s)
  plot f32 u 1:2 w lp lw 2 lc 1 t "full cache", \
       f32 u 1:3 w lp lw 2 lc 2 t "budget 0.7", \
       f32 u 1:4 w lp lw 2 lc 3 t "budget 0.5", \
       f32 u 1:5 w lp lw 2 lc 4 t "budget 0.3"
}

# every policy at budget 0.5 (llama3-8b, f32, 1 thread), the defaults: the
# speedup of the whole step (ratios inside one run are robust to the
# machine's minute-to-minute bandwidth; absolute times are not)
set output sprintf("%s/perf-decode-policies.png", out)
set title sprintf("Step speedup vs the full cache at budget 0.5, defaults, llama3-8b shape, f32, 1 thread\n%s", cpu)
unset logscale y
set logscale x 2
set ylabel "speedup of the decode step vs full cache"
set yrange [1:2.4]
set key bottom right
pp = sprintf("%s/decode-policies.dat", dir)
plot 2 w l dt 3 lc rgb "black" t "2x (half the attention)", \
     pp u 1:2 w lp lw 2 lc 3 t "keyformer", \
     pp u 1:3 w lp lw 2 lc 4 t "h2o", \
     pp u 1:4 w lp lw 2 lc 2 t "window", \
     pp u 1:5 w lp lw 2 lc 7 t "sinks"

# the library's share of the step, defaults vs spec-exact (defaults.sh)
set output sprintf("%s/perf-defaults-share.png", out)
set title sprintf("Library share of the decode step, llama3-8b shape, f32, 1 thread, budget 0.5\n%s (median of 5 rounds)", cpu)
set ylabel "library share of the step (%)"
set yrange [0:30]
set key top right
d = sprintf("%s/defaults-zen3-defaults.dat", dir)
e = sprintf("%s/defaults-zen3-spec-exact.dat", dir)
plot 8 w l dt 3 lc rgb "black" t "AVX2 target (8 %)", \
     d u 1:2 w lp lw 2 lc 3 t "defaults (any order, table noise)", \
     e u 1:2 w lp lw 2 lc 1 t "spec-exact (position order, exact noise)"
