int tick_count(void);
const char *label(void);
