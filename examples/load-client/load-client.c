/* load-client: keeps a greeter-server busy and counts what comes back.
 *
 * C connections (default 16), each a thread sending "GET userK" and reading
 * the reply, back to back, for D seconds (default 8) or until SIGINT/SIGTERM,
 * whichever comes first. Every reply must be
 * exactly one of the two versions the demo expects for that name:
 *     hello, userK (v1)
 *     HELLO, USERK (v2, patched live)
 * anything else, a connection that cannot be opened or that closes early, or
 * a reply that takes over 5 s counts as failed. Prints a per-second table
 * (replies of each version, failures, slowest reply) and a summary; exits 1
 * if anything failed.
 *
 *   load-client [--host H] [--port P] [--connections C] [--duration D]
 *   load-client [--host H] [--port P] --once NAME     one request, print the reply
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_SECONDS 3600

struct second {
  atomic_ulong v1, v2, failed;
  atomic_ulong slowest_us;
};

struct load {
  struct sockaddr_in server;
  double start, duration;
  struct second *seconds; /* one per second of the run */
  atomic_ulong opened, closed_early;
};

/* Set by SIGINT/SIGTERM: the connections finish their request and stop. */
static volatile sig_atomic_t stop_requested;

static void on_stop(int sig) {
  (void)sig;
  stop_requested = 1;
}

struct connection_args {
  struct load *load;
  int index;
};

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int connect_to(const struct sockaddr_in *server) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, (const struct sockaddr *)server, sizeof *server) < 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct timeval limit = {.tv_sec = 5}; /* a reply slower than this is a failure */
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  return fd;
}

static int send_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Reads one '\n'-terminated line into line (without the '\n'), buffering what
 * follows in buf/used. Returns its length, or -1 on error, timeout or close. */
static ssize_t read_line(int fd, char *buf, size_t cap, size_t *used, char *line, size_t line_cap) {
  for (;;) {
    char *nl = memchr(buf, '\n', *used);
    if (nl) {
      size_t len = (size_t)(nl - buf);
      if (len >= line_cap) return -1;
      memcpy(line, buf, len);
      line[len] = '\0';
      memmove(buf, nl + 1, *used - len - 1);
      *used -= len + 1;
      return (ssize_t)len;
    }
    if (*used == cap) return -1;
    ssize_t n = recv(fd, buf + *used, cap - *used, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    *used += (size_t)n;
  }
}

static void note_latency(struct second *s, unsigned long us) {
  unsigned long seen = atomic_load(&s->slowest_us);
  while (us > seen && !atomic_compare_exchange_weak(&s->slowest_us, &seen, us)) {
  }
}

static struct second *second_at(struct load *load, double t) {
  long i = (long)(t - load->start);
  if (i < 0) i = 0;
  if (i >= MAX_SECONDS) i = MAX_SECONDS - 1;
  return &load->seconds[i];
}

static void *connection_main(void *arg) {
  struct connection_args *a = arg;
  struct load *load = a->load;
  char name[32], upper[32], request[64], v1[96], v2[96];
  snprintf(name, sizeof name, "user%d", a->index);
  size_t i = 0;
  for (; name[i]; i++) upper[i] = (char)toupper((unsigned char)name[i]);
  upper[i] = '\0';
  int request_len = snprintf(request, sizeof request, "GET %s\n", name);
  snprintf(v1, sizeof v1, "hello, %s (v1)", name);
  snprintf(v2, sizeof v2, "HELLO, %s (v2, patched live)", upper);

  int fd = connect_to(&load->server);
  if (fd < 0) {
    atomic_fetch_add(&second_at(load, now())->failed, 1);
    atomic_fetch_add(&load->closed_early, 1);
    return NULL;
  }
  atomic_fetch_add(&load->opened, 1);

  char buf[4096], line[512];
  size_t used = 0;
  for (;;) {
    double sent = now();
    if (sent - load->start >= load->duration || stop_requested) break;
    struct second *s = second_at(load, sent);
    if (send_all(fd, request, (size_t)request_len) < 0 ||
        read_line(fd, buf, sizeof buf, &used, line, sizeof line) < 0) {
      atomic_fetch_add(&s->failed, 1);
      atomic_fetch_add(&load->closed_early, 1);
      break;
    }
    note_latency(s, (unsigned long)((now() - sent) * 1e6));
    if (strcmp(line, v1) == 0) {
      atomic_fetch_add(&s->v1, 1);
    } else if (strcmp(line, v2) == 0) {
      atomic_fetch_add(&s->v2, 1);
    } else {
      atomic_fetch_add(&s->failed, 1);
      fprintf(stderr, "load-client: %s: unexpected reply '%s'\n", name, line);
    }
  }
  close(fd);
  return NULL;
}

static int once(const struct sockaddr_in *server, const char *name) {
  int fd = connect_to(server);
  if (fd < 0) {
    fprintf(stderr, "load-client: cannot connect: %s\n", strerror(errno));
    return 1;
  }
  char request[256], buf[1024], line[1024];
  int len = snprintf(request, sizeof request, "GET %s\n", name);
  size_t used = 0;
  if (len < 0 || (size_t)len >= sizeof request || send_all(fd, request, (size_t)len) < 0 ||
      read_line(fd, buf, sizeof buf, &used, line, sizeof line) < 0) {
    fprintf(stderr, "load-client: no reply\n");
    close(fd);
    return 1;
  }
  printf("%s\n", line);
  close(fd);
  return 0;
}

static void usage(FILE *to) {
  fprintf(to, "usage: load-client [--host H] [--port P] [--connections C] [--duration SECONDS]\n"
              "       load-client [--host H] [--port P] --once NAME\n");
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  const char *once_name = NULL;
  int port = 7070, connections = 16;
  double duration = 8;
  static const struct option options[] = {
      {"host", required_argument, NULL, 'H'},        {"port", required_argument, NULL, 'p'},
      {"connections", required_argument, NULL, 'c'}, {"duration", required_argument, NULL, 'd'},
      {"once", required_argument, NULL, 'o'},        {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  for (int opt; (opt = getopt_long(argc, argv, "H:p:c:d:o:h", options, NULL)) != -1;) {
    switch (opt) {
      case 'H': host = optarg; break;
      case 'p': port = atoi(optarg); break;
      case 'c': connections = atoi(optarg); break;
      case 'd': duration = atof(optarg); break;
      case 'o': once_name = optarg; break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
  }
  struct sockaddr_in server = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (port <= 0 || port > 65535 || inet_pton(AF_INET, host, &server.sin_addr) != 1 || connections < 1 ||
      connections > 10000 || duration <= 0 || duration >= MAX_SECONDS) {
    usage(stderr);
    return 2;
  }
  if (once_name) return once(&server, once_name);

  struct load load = {.server = server, .duration = duration};
  load.seconds = calloc(MAX_SECONDS, sizeof *load.seconds);
  struct connection_args *args = calloc((size_t)connections, sizeof *args);
  pthread_t *threads = calloc((size_t)connections, sizeof *threads);
  if (!load.seconds || !args || !threads) {
    fprintf(stderr, "load-client: out of memory\n");
    return 1;
  }
  struct sigaction stop = {.sa_handler = on_stop};
  sigemptyset(&stop.sa_mask);
  sigaction(SIGINT, &stop, NULL);
  sigaction(SIGTERM, &stop, NULL);

  printf("load-client: %d connections to %s:%d for %g s or until SIGINT/SIGTERM\n", connections, host, port,
         duration);
  fflush(stdout);
  load.start = now();
  int started = 0;
  for (int i = 0; i < connections; i++) {
    args[i] = (struct connection_args){.load = &load, .index = i};
    if (pthread_create(&threads[i], NULL, connection_main, &args[i]) != 0) {
      fprintf(stderr, "load-client: cannot start connection %d\n", i);
      atomic_fetch_add(&load.seconds[0].failed, 1);
      break;
    }
    started++;
  }
  for (int i = 0; i < started; i++) pthread_join(threads[i], NULL);
  double ran = now() - load.start;

  unsigned long v1 = 0, v2 = 0, failed = 0, slowest = 0;
  int last = (int)ran + 1;
  printf("%6s %12s %12s %8s %14s\n", "second", "v1 replies", "v2 replies", "failed", "slowest reply");
  for (int i = 0; i < last && i < MAX_SECONDS; i++) {
    struct second *s = &load.seconds[i];
    unsigned long a = atomic_load(&s->v1), b = atomic_load(&s->v2), f = atomic_load(&s->failed),
                  us = atomic_load(&s->slowest_us);
    if (a + b + f == 0 && i >= (int)ran) continue;
    printf("%6d %12lu %12lu %8lu %11.1f ms\n", i + 1, a, b, f, (double)us / 1000.0);
    v1 += a;
    v2 += b;
    failed += f;
    if (us > slowest) slowest = us;
  }
  printf("requests: %lu, failed: %lu, v1 replies: %lu, v2 replies: %lu (in %.1f s)\n", v1 + v2 + failed, failed,
         v1, v2, ran);
  printf("connections: %lu opened, %lu closed early; slowest reply %.1f ms\n", atomic_load(&load.opened),
         atomic_load(&load.closed_early), (double)slowest / 1000.0);
  return failed == 0 && atomic_load(&load.closed_early) == 0 ? 0 : 1;
}
