# The worker proc of the hello example: does a unit of work every few seconds.
n=0
while true; do
  n=$((n + 1))
  echo "worker ${LAIN_INSTANCE_NO}: job $n done"
  sleep 5
done
