# Plots bench/scaling.dat (written by build/bench/scaling) into
# bench/scaling.png: events/s and efficiency against worker threads.
# Usage (from the repository root): gnuplot bench/scaling.gp
set terminal pngcairo size 900,520 font ",11"
set output "bench/scaling.png"
machine = system("sed -n 's/^# machine: //p' bench/scaling.dat")
set title "npstream: parse + aggregate with N workers and one merger (in-process source)\n".machine
set xlabel "worker threads"
set ylabel "million events/s"
set y2label "efficiency = rate(N) / (N * rate(1))"
set ytics nomirror
set y2tics
set y2range [0:1.1]
set yrange [0:*]
set xtics 1
set key top left
set grid ytics
plot "bench/scaling.dat" using 1:($2 / 1e6) with linespoints lw 2 pt 7 title "events/s", \
     "" using 1:3 axes x1y2 with linespoints lw 2 pt 5 dt 2 title "efficiency"
