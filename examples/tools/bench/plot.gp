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

# every policy at budget 0.5 (llama3-8b, f32, 1 thread), both slot orders:
# the speedup of the whole step (ratios inside one run are robust to the
# machine's minute-to-minute bandwidth; absolute times are not)
set output sprintf("%s/perf-decode-policies.png", out)
set title "Step speedup vs the full cache at budget 0.5, llama3-8b shape, f32, 1 thread\n(solid: position order, dashed: KF_ORDER_ANY)"
unset logscale y
set logscale x 2
set ylabel "speedup of the decode step vs full cache"
set yrange [1:2.4]
set terminal pngcairo size 1150,600 noenhanced
set key outside right top
pp = sprintf("%s/decode-policies-position.dat", dir)
pa = sprintf("%s/decode-policies-any.dat", dir)
plot 2 w l dt 3 lc rgb "black" t "2x (half the attention)", \
     pp u 1:2 w lp lw 2 lc 3 t "keyformer", \
     pp u 1:3 w lp lw 2 lc 4 t "h2o", \
     pp u 1:4 w lp lw 2 lc 2 t "window", \
     pp u 1:5 w lp lw 2 lc 7 t "sinks", \
     pa u 1:2 w lp dt 2 lw 2 lc 3 t "keyformer, any order", \
     pa u 1:3 w lp dt 2 lw 2 lc 4 t "h2o, any order", \
     pa u 1:4 w lp dt 2 lw 2 lc 2 t "window, any order", \
     pa u 1:5 w lp dt 2 lw 2 lc 7 t "sinks, any order"
