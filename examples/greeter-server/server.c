/* greeter-server: a small multi-threaded TCP server, the patient of the demo.
 *
 * N worker threads (default 8) each run an epoll loop. All of them watch the
 * one listening socket (EPOLLEXCLUSIVE wakes one worker per new connection);
 * a worker keeps the connections it accepted. Requests are lines:
 * "GET name" gets "hello, name (v1)", see reply.c. The main thread only waits
 * for SIGINT/SIGTERM, then prints what was served.
 *
 *   greeter-server [--port PORT] [--threads N]     (PORT 0: any free port)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "reply.h"

struct connection {
  int fd;
  size_t used;                   /* bytes of an unfinished request in `in` */
  char in[GREETER_MAX_LINE + 1];
};

struct server {
  int listen_fd;
  atomic_ulong requests;
  atomic_ulong connections;
};

static void die(const char *what) {
  fprintf(stderr, "greeter-server: %s: %s\n", what, strerror(errno));
  exit(1);
}

/* Writes all of buf; the socket is non-blocking, so wait for room when full. */
static int send_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
    if (n > 0) {
      buf += n;
      len -= (size_t)n;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      struct pollfd p = {.fd = fd, .events = POLLOUT};
      if (poll(&p, 1, 5000) <= 0) return -1;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return -1;
    }
  }
  return 0;
}

/* Answers every complete line in the connection's buffer. Returns -1 when the
 * connection must be closed. */
static int serve_lines(struct server *server, struct connection *c) {
  char reply[GREETER_MAX_LINE + 64];
  char out[8192];
  size_t out_len = 0;
  size_t start = 0;
  for (size_t i = 0; i < c->used; i++) {
    if (c->in[i] != '\n') continue;
    c->in[i] = '\0';
    if (i > start && c->in[i - 1] == '\r') c->in[i - 1] = '\0';
    size_t n = handle_request(c->in + start, reply, sizeof reply);
    if (out_len + n > sizeof out) {
      if (send_all(c->fd, out, out_len) < 0) return -1;
      out_len = 0;
    }
    memcpy(out + out_len, reply, n);
    out_len += n;
    atomic_fetch_add_explicit(&server->requests, 1, memory_order_relaxed);
    start = i + 1;
  }
  if (out_len > 0 && send_all(c->fd, out, out_len) < 0) return -1;
  memmove(c->in, c->in + start, c->used - start);
  c->used -= start;
  if (c->used == GREETER_MAX_LINE) { /* a line too long to be a request */
    static const char too_long[] = "error: line too long\n";
    send_all(c->fd, too_long, sizeof too_long - 1);
    return -1;
  }
  return 0;
}

static void close_connection(int epoll_fd, struct connection *c) {
  epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  free(c);
}

static void accept_all(struct server *server, int epoll_fd) {
  for (;;) {
    int fd = accept4(server->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return; /* EAGAIN: another worker took it, or none left */
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct connection *c = calloc(1, sizeof *c);
    if (!c) {
      close(fd);
      continue;
    }
    c->fd = fd;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
      close(fd);
      free(c);
      continue;
    }
    atomic_fetch_add_explicit(&server->connections, 1, memory_order_relaxed);
  }
}

static void *worker_main(void *arg) {
  struct server *server = arg;
  int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) die("epoll_create1");
  /* data.ptr == NULL marks the listening socket */
  struct epoll_event listen_ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = NULL};
  if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, server->listen_fd, &listen_ev) < 0) die("epoll_ctl");

  struct epoll_event events[64];
  for (;;) {
    int n = epoll_wait(epoll_fd, events, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; i++) {
      struct connection *c = events[i].data.ptr;
      if (!c) {
        accept_all(server, epoll_fd);
        continue;
      }
      ssize_t got = read(c->fd, c->in + c->used, GREETER_MAX_LINE - c->used);
      if (got > 0) {
        c->used += (size_t)got;
        if (serve_lines(server, c) < 0) close_connection(epoll_fd, c);
      } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
        close_connection(epoll_fd, c);
      }
    }
  }
  return NULL;
}

static void usage(FILE *to) {
  fprintf(to, "usage: greeter-server [--port PORT] [--threads N]\n"
              "  --port PORT   TCP port on 127.0.0.1 (default 7070; 0 picks a free one)\n"
              "  --threads N   worker threads (default 8)\n");
}

int main(int argc, char **argv) {
  int port = 7070;
  int threads = 8;
  static const struct option options[] = {
      {"port", required_argument, NULL, 'p'},
      {"threads", required_argument, NULL, 't'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  for (int opt; (opt = getopt_long(argc, argv, "p:t:h", options, NULL)) != -1;) {
    switch (opt) {
      case 'p': port = atoi(optarg); break;
      case 't': threads = atoi(optarg); break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
  }
  if (port < 0 || port > 65535 || threads < 1 || threads > 1024) {
    usage(stderr);
    return 2;
  }

  /* Workers never see SIGINT/SIGTERM; the main thread waits for them. */
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

  struct server server = {.listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)};
  if (server.listen_fd < 0) die("socket");
  int one = 1;
  setsockopt(server.listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(server.listen_fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
  if (listen(server.listen_fd, 1024) < 0) die("listen");
  socklen_t addr_len = sizeof addr;
  getsockname(server.listen_fd, (struct sockaddr *)&addr, &addr_len);

  for (int i = 0; i < threads; i++) {
    pthread_t t;
    if (pthread_create(&t, NULL, worker_main, &server) != 0) die("pthread_create");
    char name[16];
    snprintf(name, sizeof name, "greeter-%d", i);
    pthread_setname_np(t, name);
  }
  printf("greeter-server: pid %d listening on 127.0.0.1:%d with %d worker threads\n", (int)getpid(),
         ntohs(addr.sin_port), threads);
  fflush(stdout);

  int sig;
  sigwait(&stop_signals, &sig);
  printf("greeter-server: stopping on %s; served %lu requests on %lu connections\n",
         sig == SIGINT ? "SIGINT" : "SIGTERM", atomic_load(&server.requests),
         atomic_load(&server.connections));
  return 0;
}
