/* In the tree, included by nothing. */
#define UNUSED_LIMIT 10
