/* The patch of the steady-state cost benchmark (see hot.c). Both replacements
 * keep hot.c's body on the path the loops take, so a patched call differs from
 * an unpatched one only by how it gets there:
 *  - hot_jump's replacement is the original body (its rare path bumps the
 *    target's own counter): it writes no register the old function left alone,
 *    so calls take the entry jump straight into it;
 *  - hot_thunk's replacement calls hot_rare() on the rare path, so it may write
 *    every caller-saved register: `suture pack` puts a preserving thunk between
 *    the entry jump and it (run.py checks pack's note says so). */
#include <suture/patch.h>

extern unsigned long hot_rare_calls;
void hot_rare(unsigned x);

#define RARE 0xFFFFFFFFu
#define HASH(x)              \
  do {                       \
    (x) ^= (x) >> 16;        \
    (x) *= 0x7feb352du;      \
    (x) ^= (x) >> 15;        \
    (x) *= 0x846ca68bu;      \
    (x) ^= (x) >> 16;        \
  } while (0)

static unsigned hot_jump_v2(unsigned x) {
  if (__builtin_expect(x == RARE, 0)) ++hot_rare_calls;
  HASH(x);
  return x;
}

static unsigned hot_thunk_v2(unsigned x) {
  /* The rare path returns hash(RARE), which gcc folds to a constant: nothing is
   * live across the call, so the common path needs no callee-saved register
   * (no push/pop) and is the same instructions as the others'. */
  if (__builtin_expect(x == RARE, 0)) {
    hot_rare(x);
    x = RARE;
    HASH(x);
    return x;
  }
  HASH(x);
  return x;
}

SUTURE_REPLACE(hot_jump, hot_jump_v2);
SUTURE_REPLACE(hot_thunk, hot_thunk_v2);
