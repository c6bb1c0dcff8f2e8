# Reverting a patch whose code is on a thread's stack beneath a frame of another
# patch's code: the worker sleeps in slow's pause_briefly(), called from outer's
# step(). Suture must unwind through slow's frame (patch code, which no loaded
# object describes) to see outer's beneath it, and refuse to take outer away
# while the worker will return into it, in stop-the-world and zero-suspend mode
# alike. Once the worker is out, the reverts go through.
build target target.c
fix slow slow.c
fix outer outer.c
pack slow target
pack outer target

start target
wait_for '^worker round [0-9]+ result=[0-9]+$'
apply --mode zero-suspend slow
apply --mode zero-suspend outer
# The round under way ran the old step(); the next one runs outer's, and sleeps
# 8 s in slow's pause_briefly() from the moment this line is printed.
wait_for '^worker round [0-9]+ result=[0-9]+$' 10
revert_fails "${PATCH_ID[outer]}" --mode zero-suspend --timeout 1 outer
revert_fails "${PATCH_ID[outer]}" --timeout 1 outer
status_has slow outer
# Both go, newest first, each once the worker has left its code.
revert --mode zero-suspend --timeout 15 outer
wait_for '^worker round [0-9]+ result=1[0-9]{3,}$' 10
revert --mode zero-suspend --timeout 15 slow
wait_for '^worker round [0-9]+ result=[0-9]{1,3}$' 10
stop
