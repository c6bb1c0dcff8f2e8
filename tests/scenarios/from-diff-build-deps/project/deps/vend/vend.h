int vend_value(int x);
int vend_rounds(void);
int vend_other(int x);
