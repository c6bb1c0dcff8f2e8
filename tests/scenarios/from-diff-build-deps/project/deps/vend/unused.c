/* In the tree, never compiled by its build. */
int vend_unused(int x) { return x; }
