// calc::leaf for target.cc, compiled apart so that its callers cannot know it
// never throws. (x >> 30 is 0 for every tick; it only makes the entry long
// enough for a jump.)
namespace calc {

__attribute__((noinline)) int leaf(int x) { return x * 3 + (x >> 30); }

}  // namespace calc
