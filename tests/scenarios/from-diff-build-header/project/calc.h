/* What both translation units take from here: a step and a label. */
#define CALC_STEP 1
#define CALC_LABEL "v1"

static inline int calc_bump(int x) { return x + CALC_STEP; }

int calc_next(int x);
const char *describe(void);
