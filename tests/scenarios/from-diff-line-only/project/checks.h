void log_at(const char *file, int line, const char *message, int value);
#define LOG(message, value) log_at(__FILE__, __LINE__, message, value)
int checked_double(int x);
int logged_step(int x);
const char *label(void);
