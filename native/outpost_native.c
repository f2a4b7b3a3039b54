/*
 * outpost_native: the two host interfaces Node cannot reach by itself.
 *
 * - notify(state, socketPath): the sd_notify datagram protocol, following the self-contained
 *   example in sd_notify(3) NOTES, so no libsystemd is needed. JS reads NOTIFY_SOCKET and passes
 *   it in; C never calls getenv, so tests and callers control the environment.
 * - wd*(): the Linux watchdog device API (Documentation/watchdog/watchdog-api.rst).
 * - peerCredentials(fd): who is at the other end of a unix socket (SO_PEERCRED, SO_PEERGROUPS), for
 *   the local API's access rules.
 *
 * Invariant: errno failures are returned as negative errno, never thrown; JS maps them to
 * OutpostError codes. Only wrong argument types throw (a programming error).
 */
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <linux/watchdog.h>
#include <node_api.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_ARGS 2
#define MAX_STATE 4096 /* well under the datagram limit; notify states are a few short lines */

static napi_value ret_int(napi_env env, int v) {
  napi_value out;
  napi_create_int32(env, v, &out);
  return out;
}

/* Copies a string argument into buf: 1 ok, 0 undefined/null, -1 too long, -2 TypeError thrown. */
static int arg_string(napi_env env, napi_value v, char *buf, size_t cap, size_t *len) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_undefined || t == napi_null) return 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, len) != napi_ok) {
    napi_throw_type_error(env, NULL, "expected a string");
    return -2;
  }
  if (*len >= cap) return -1; /* refuse rather than silently truncate */
  napi_get_value_string_utf8(env, v, buf, cap, len);
  return 1;
}

static int sd_notify_to(const char *message, size_t message_len, const char *path, size_t path_len) {
  union { struct sockaddr sa; struct sockaddr_un un; } addr = { .un.sun_family = AF_UNIX };
  if (message_len == 0) return -EINVAL;
  if (path[0] != '/' && path[0] != '@') return -EAFNOSUPPORT;
  if (path_len >= sizeof(addr.un.sun_path)) return -E2BIG;
  memcpy(addr.un.sun_path, path, path_len);
  if (addr.un.sun_path[0] == '@') addr.un.sun_path[0] = '\0'; /* abstract namespace */

  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int r = 1;
  /* The address length counts the name exactly: abstract names are not NUL-terminated. */
  if (connect(fd, &addr.sa, offsetof(struct sockaddr_un, sun_path) + path_len) != 0) {
    r = -errno;
  } else {
    /* Unlike the man page example, never block: a stuck PID 1 must not freeze the event loop
     * (and with it the hardware watchdog feed); the caller sees -EAGAIN and can retry. */
    ssize_t n = send(fd, message, message_len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n != (ssize_t)message_len) r = n < 0 ? -errno : -EPROTO;
  }
  close(fd);
  return r;
}

/* notify(state: string, socketPath?: string): 1 sent, 0 no socket, -errno failure. */
static napi_value js_notify(napi_env env, napi_callback_info info) {
  size_t argc = MAX_ARGS;
  napi_value argv[MAX_ARGS];
  char state[MAX_STATE], path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
  size_t state_len = 0, path_len = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1) return ret_int(env, -EINVAL);
  int s = arg_string(env, argv[0], state, sizeof state, &state_len);
  if (s == -2) return NULL;
  if (s <= 0) return ret_int(env, s == 0 ? -EINVAL : -E2BIG);
  int p = argc < 2 ? 0 : arg_string(env, argv[1], path, sizeof path, &path_len);
  if (p == -2) return NULL;
  if (p == 0 || path_len == 0) return ret_int(env, 0); /* NOTIFY_SOCKET unset: protocol no-op */
  if (p < 0) return ret_int(env, -E2BIG);
  return ret_int(env, sd_notify_to(state, state_len, path, path_len));
}

/* Reads up to two int32 arguments; throws a TypeError (returns 0) if one is missing. */
static int int_args(napi_env env, napi_callback_info info, size_t want, int32_t *out) {
  size_t argc = MAX_ARGS;
  napi_value argv[MAX_ARGS];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  for (size_t i = 0; i < want; i++) {
    if (i >= argc || napi_get_value_int32(env, argv[i], &out[i]) != napi_ok) {
      napi_throw_type_error(env, NULL, "expected a number");
      return 0;
    }
  }
  return 1;
}

/* wdOpen(path): fd or -errno. Opening arms the watchdog on most drivers. */
static napi_value js_wd_open(napi_env env, napi_callback_info info) {
  size_t argc = 1, len = 0;
  napi_value argv[1];
  char path[4096];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int s = argc < 1 ? 0 : arg_string(env, argv[0], path, sizeof path, &len);
  if (s == -2) return NULL;
  if (s <= 0) return ret_int(env, s == 0 ? -EINVAL : -ENAMETOOLONG);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  return ret_int(env, fd < 0 ? -errno : fd);
}

static napi_value js_wd_keepalive(napi_env env, napi_callback_info info) {
  int32_t a[1];
  if (!int_args(env, info, 1, a)) return NULL;
  int dummy = 0;
  return ret_int(env, ioctl(a[0], WDIOC_KEEPALIVE, &dummy) < 0 ? -errno : 0);
}

/* wdSetTimeout(fd, sec): the timeout the driver actually chose (it may round), or -errno. */
static napi_value js_wd_set_timeout(napi_env env, napi_callback_info info) {
  int32_t a[2];
  if (!int_args(env, info, 2, a)) return NULL;
  int t = a[1];
  return ret_int(env, ioctl(a[0], WDIOC_SETTIMEOUT, &t) < 0 ? -errno : t);
}

static napi_value js_wd_get_timeout(napi_env env, napi_callback_info info) {
  int32_t a[1];
  if (!int_args(env, info, 1, a)) return NULL;
  int t = 0;
  return ret_int(env, ioctl(a[0], WDIOC_GETTIMEOUT, &t) < 0 ? -errno : t);
}

/* wdClose(fd, magic): writing 'V' first is the "magic close" that disarms (unless nowayout). */
static napi_value js_wd_close(napi_env env, napi_callback_info info) {
  size_t argc = MAX_ARGS;
  napi_value argv[MAX_ARGS];
  int32_t fd;
  bool magic = false;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "expected a number");
    return NULL;
  }
  if (argc >= 2) napi_get_value_bool(env, argv[1], &magic);
  int r = 0;
  if (magic && write(fd, "V", 1) != 1) r = -errno;
  if (close(fd) != 0 && r == 0) r = -errno;
  return ret_int(env, r);
}

/* Supplementary groups beyond this many are not seen (access then rests on the others). */
#define MAX_PEER_GROUPS 1024

/* peerCredentials(fd): [pid, uid, gid, ...supplementary gids] of the peer, or -errno. */
static napi_value js_peer_credentials(napi_env env, napi_callback_info info) {
  int32_t a[1];
  if (!int_args(env, info, 1, a)) return NULL;
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(a[0], SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return ret_int(env, -errno);
  static gid_t groups[MAX_PEER_GROUPS];
  socklen_t groups_len = sizeof groups;
  size_t n = 0;
  /* SO_PEERGROUPS: Linux 4.13+. Too many groups (ERANGE) or an older kernel: the primary gid only. */
  if (getsockopt(a[0], SOL_SOCKET, SO_PEERGROUPS, groups, &groups_len) == 0) n = groups_len / sizeof(gid_t);
  else if (errno != ERANGE && errno != ENOPROTOOPT) return ret_int(env, -errno);
  napi_value out, v;
  napi_create_array_with_length(env, 3 + n, &out);
  uint32_t fields[3] = { (uint32_t)cred.pid, (uint32_t)cred.uid, (uint32_t)cred.gid };
  for (uint32_t i = 0; i < 3; i++) {
    napi_create_uint32(env, fields[i], &v);
    napi_set_element(env, out, i, v);
  }
  for (size_t i = 0; i < n; i++) {
    napi_create_uint32(env, (uint32_t)groups[i], &v);
    napi_set_element(env, out, (uint32_t)(3 + i), v);
  }
  return out;
}

NAPI_MODULE_INIT() {
  const napi_property_descriptor props[] = {
    { "notify", NULL, js_notify, NULL, NULL, NULL, napi_enumerable, NULL },
    { "wdOpen", NULL, js_wd_open, NULL, NULL, NULL, napi_enumerable, NULL },
    { "wdKeepalive", NULL, js_wd_keepalive, NULL, NULL, NULL, napi_enumerable, NULL },
    { "wdSetTimeout", NULL, js_wd_set_timeout, NULL, NULL, NULL, napi_enumerable, NULL },
    { "wdGetTimeout", NULL, js_wd_get_timeout, NULL, NULL, NULL, napi_enumerable, NULL },
    { "wdClose", NULL, js_wd_close, NULL, NULL, NULL, napi_enumerable, NULL },
    { "peerCredentials", NULL, js_peer_credentials, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
