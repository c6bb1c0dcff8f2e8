/* Suture: the header for patch authors.
 *
 * A patch is an ordinary C or C++ file compiled to an object (cc -c -O2 -fPIC):
 *
 *     #include <suture/patch.h>
 *     extern int requests_served;            // a global of the target, static or not
 *     static int fixed_parse(const char *s) { ... }
 *     SUTURE_REPLACE(parse, fixed_parse);     // calls to parse() now run fixed_parse()
 *
 * Naming the function to replace:
 *   SUTURE_REPLACE(name, new_fn)              a function of the target, by name
 *   SUTURE_REPLACE(file.c:name, new_fn)       a static function, with its source file,
 *                                             when several files have one of that name
 *   SUTURE_REPLACE(ns::Class::method, new_fn) C++: the qualified name (unique), or the
 *   SUTURE_REPLACE(ns::f(int), new_fn)        signature when it is overloaded, or the
 *   SUTURE_REPLACE(_ZN2ns1fEi, new_fn)        mangled name.
 *
 * Reaching a static variable or function of the target whose name is shared by several
 * source files: declare it under a name of your own and bind that name to it.
 *     extern int a_count;
 *     SUTURE_BIND(a_count, a.c:count);
 *
 * Nothing here generates code: the macros only leave records in the object's
 * .suture.* sections, which `suture pack` reads and the loader does not map.
 */
#ifndef SUTURE_PATCH_H
#define SUTURE_PATCH_H

#ifdef __cplusplus
#define SUTURE_EXTERN_C extern "C"
#else
#define SUTURE_EXTERN_C
#endif

struct suture_replace_record {
  const char *old_symbol; /* as the author spelled it */
  const void *new_function;
};

struct suture_bind_record {
  const char *local_name;
  const char *target_symbol; /* "name" or "file.c:name" */
};

#define SUTURE_CAT_(a, b) a##b
#define SUTURE_CAT(a, b) SUTURE_CAT_(a, b)

#define SUTURE_REPLACE(old_symbol, new_function)                                      \
  __attribute__((used, section(".suture.replace"), aligned(8))) static const struct \
      suture_replace_record SUTURE_CAT(suture_replace_, __COUNTER__) = {             \
          #old_symbol, (const void *)&new_function}

#define SUTURE_BIND(local_name, target_symbol)                                     \
  __attribute__((used, section(".suture.bind"), aligned(8))) static const struct \
      suture_bind_record SUTURE_CAT(suture_bind_, __COUNTER__) = {#local_name,    \
                                                                  #target_symbol}

#endif /* SUTURE_PATCH_H */
