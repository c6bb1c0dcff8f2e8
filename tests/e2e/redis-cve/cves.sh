# The Redis fixes the end-to-end tests and bench/build-time use, from Debian's
# redis 7.0.15 source package. Sourced; `cve_facts CVE` sets
#   FIX       the patch in debian/patches
#   MARK      FILE:TEXT that only the fixed tree has
#   REPLACES  a function the live patch must replace
#   EXPECT    more lines `suture build` must print
# and returns 1 for a CVE it does not know.
CVES=(CVE-2025-32023 CVE-2024-46981 CVE-2025-49844)

cve_facts() {
  case $1 in
    CVE-2025-32023)  # hyperloglog: out-of-bounds write on a corrupted sparse HLL
      FIX=0006-CVE-2025-32023.patch
      MARK='src/hyperloglog.c:!valid || idx != HLL_REGISTERS'
      REPLACES=hllSparseToDense
      # hllSparseSet and hllCount only see the lines of their asserts move.
      EXPECT=('outside the build: tests/unit/hyperloglog.tcl'
              'not a change: src/hyperloglog.c: hllSparseSet: only line numbers changed') ;;
    CVE-2024-46981)  # scripting: SCRIPT FLUSH closed Lua without a full GC first
      FIX=0001-Fix-LUA-garbage-collector-CVE-2024-46981-1513.patch
      MARK='src/eval.c:lua_gc(lctx.lua, LUA_GCCOLLECT, 0);'
      REPLACES=scriptingRelease
      EXPECT=('recompiled: src/eval.c') ;;
    CVE-2025-49844)  # Lua parser in deps/: the chunk name was not anchored during parsing
      FIX=CVE-2025-49844.patch
      MARK='deps/lua/src/lparser.c:setsvalue2s(L, L->top, tname);'
      REPLACES=luaY_parser
      # Redis's `make redis-server` never rebuilds deps/lua: suture build must
      # replay the logged compile, and find redis-server through liblua.a.
      EXPECT=('replayed: deps/lua/src/lparser.c') ;;
    *) return 1 ;;
  esac
}
