// A shared library with thread-local storage, loaded at start-up (DT_NEEDED), so
// glibc gives its block a static TLS offset that loaded_objects() must find.
extern "C" {

thread_local long fixture_tls_value = 42;

long* fixture_tls_address() { return &fixture_tls_value; }

}
