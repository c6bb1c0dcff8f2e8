int compute(int x);
int call_count(void);
const char *label(void);
