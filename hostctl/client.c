/* Blocking client for hostd's Unix socket: framed Requests out, framed Responses in, with a
 * deadline on every wait. */
#include "client.h"

#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include "util.h"

_printf_(3, 4) static int client_fail(struct hostd_client *c, int r, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int saved = errno;
        errno = r < 0 ? -r : r; /* lets the message use %m */
        vsnprintf(c->error, sizeof c->error, fmt, ap);
        errno = saved;
        va_end(ap);
        return r;
}

const char *hostd_code_name(Hostd__V1__Code code, char buf[static 24])
{
        const ProtobufCEnumValue *v =
                protobuf_c_enum_descriptor_get_value(&hostd__v1__code__descriptor, (int)code);
        if (v)
                return v->name;
        snprintf(buf, 24, "CODE_%d", (int)code);
        return buf;
}

void hostd_client_init(struct hostd_client *c, int64_t timeout_ms)
{
        *c = (struct hostd_client){
                .fd = -1,
                .next_id = 1,
                .timeout_ms = timeout_ms,
                .max_frame = FRAME_MAX_DEFAULT,
        };
        frame_reader_init(&c->reader, c->max_frame);
}

void hostd_client_done(struct hostd_client *c)
{
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        frame_reader_free(&c->reader);
        frame_reader_init(&c->reader, c->max_frame);
}

int hostd_client_connect(struct hostd_client *c, const char *path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t n = strlen(path);

        if (n == 0)
                return client_fail(c, -EINVAL, "connect: empty socket path");
        if (n >= sizeof sa.sun_path)
                return client_fail(c, -ENAMETOOLONG,
                                   "connect %s: socket path longer than %zu bytes", path,
                                   sizeof sa.sun_path - 1);
        memcpy(sa.sun_path, path, n);

        if (c->fd >= 0)
                hostd_client_done(c);

        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return client_fail(c, -errno, "socket: %m");

        /* A non-blocking connect on a Unix socket cannot be waited for with poll (it fails
         * with EAGAIN when the listener's backlog is full), but a blocking one honours
         * SO_SNDTIMEO: that is the connect timeout. */
        if (c->timeout_ms >= 0) {
                int64_t ms = c->timeout_ms > 0 ? c->timeout_ms : 1;
                struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
                if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0)
                        return client_fail(c, -errno, "connect %s: set timeout: %m", path);
        }

        for (;;) {
                if (connect(fd, (struct sockaddr *)&sa, sizeof sa) >= 0)
                        break;
                if (errno == EINTR)
                        continue;
                int r = errno == EAGAIN || errno == EINPROGRESS ? -ETIMEDOUT : -errno;
                return client_fail(c, r, "connect %s: %m", path);
        }

        /* From here on every wait goes through poll with the deadline. */
        int flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return client_fail(c, -errno, "connect %s: set non-blocking: %m", path);

        c->fd = TAKE_FD(fd);
        return 0;
}

static uint64_t deadline_from_now(const struct hostd_client *c)
{
        if (c->timeout_ms < 0)
                return UINT64_MAX;
        return now_monotonic_usec() + (uint64_t)c->timeout_ms * 1000;
}

/* Wait for events on the socket until the deadline: 0 when ready, -ETIMEDOUT. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
        for (;;) {
                int ms = -1;
                if (deadline != UINT64_MAX) {
                        uint64_t now = now_monotonic_usec();
                        if (now >= deadline)
                                return -ETIMEDOUT;
                        uint64_t left = (deadline - now + 999) / 1000;
                        ms = left > INT_MAX ? INT_MAX : (int)left;
                }
                struct pollfd p = { .fd = fd, .events = events };
                int r = poll(&p, 1, ms);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (r > 0)
                        return 0; /* POLLHUP and POLLERR too: the next read or send says why */
        }
}

static int send_request(struct hostd_client *c, Hostd__V1__Request *req, uint64_t deadline)
{
        if (c->fd < 0)
                return client_fail(c, -ENOTCONN, "not connected to hostd");

        size_t len = hostd__v1__request__get_packed_size(req);
        if (len > c->max_frame)
                return client_fail(c, -EMSGSIZE, "request of %zu bytes is over the limit of %zu",
                                   len, c->max_frame);

        _cleanup_free_ uint8_t *buf = malloc(FRAME_VARINT_MAX + len);
        if (!buf)
                return client_fail(c, -ENOMEM, "out of memory");
        size_t n = frame_varint_encode(len, buf);
        n += hostd__v1__request__pack(req, buf + n);

        /* send() with MSG_NOSIGNAL rather than write(): a hostd that went away is an error to
         * report, not a SIGPIPE that kills us (and SIGPIPE stays as it is for stdout, so that
         * "hostctl logs -f | head" ends the usual way). */
        for (size_t done = 0; done < n;) {
                ssize_t k = send(c->fd, buf + done, n - done, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (k >= 0) {
                        done += (size_t)k;
                        continue;
                }
                if (errno == EINTR)
                        continue;
                if (errno != EAGAIN)
                        return client_fail(c, -errno, "send request to hostd: %m");
                int r = wait_fd(c->fd, POLLOUT, deadline);
                if (r == -ETIMEDOUT)
                        return client_fail(c, r,
                                           "hostd did not take the request within %" PRId64 " ms",
                                           c->timeout_ms);
                if (r < 0)
                        return client_fail(c, r, "poll: %m");
        }
        return 0;
}

/* Read the next Response, whichever id it carries. */
static int read_response(struct hostd_client *c, uint64_t deadline, Hostd__V1__Response **ret)
{
        for (;;) {
                const uint8_t *msg;
                size_t len;
                int r = frame_reader_next(&c->reader, &msg, &len);
                if (r == -EMSGSIZE)
                        return client_fail(c, r, "hostd sent a message over the limit of %zu bytes",
                                           c->max_frame);
                if (r < 0)
                        return client_fail(c, r, "hostd sent a malformed frame: %m");
                if (r > 0) {
                        Hostd__V1__Response *resp = hostd__v1__response__unpack(NULL, len, msg);
                        if (!resp)
                                return client_fail(c, -EBADMSG,
                                                   "hostd sent a Response that does not decode");
                        *ret = resp;
                        return 0;
                }

                ssize_t k = frame_reader_fill(&c->reader, c->fd);
                if (k > 0)
                        continue;
                if (k == 0) {
                        if (frame_reader_partial(&c->reader))
                                return client_fail(
                                        c, -EPIPE,
                                        "hostd closed the connection in the middle of a message");
                        return client_fail(c, -ECONNRESET, "hostd closed the connection");
                }
                if (k != -EAGAIN)
                        return client_fail(c, (int)k, "read from hostd: %m");

                r = wait_fd(c->fd, POLLIN, deadline);
                if (r == -ETIMEDOUT) {
                        if (c->timeout_ms % 1000 == 0)
                                return client_fail(c, r, "no reply from hostd within %" PRId64 " s",
                                                   c->timeout_ms / 1000);
                        return client_fail(c, r, "no reply from hostd within %" PRId64 " ms",
                                           c->timeout_ms);
                }
                if (r < 0)
                        return client_fail(c, r, "poll: %m");
        }
}

/* An error Status turns into -EREMOTEIO with "CODE: message". */
static int check_status(struct hostd_client *c, const Hostd__V1__Response *resp)
{
        if (!resp->status || resp->status->code == HOSTD__V1__CODE__OK)
                return 0;
        char buf[24];
        c->code = resp->status->code;
        const char *m = resp->status->message;
        return client_fail(c, -EREMOTEIO, "%s%s%s", hostd_code_name(c->code, buf),
                           m && *m ? ": " : "", m ? m : "");
}

/* The Response answers our request: its id, or id 0 with an error Status, which can only be
 * hostd refusing a request it could not even read the id of (we never use id 0). */
static bool response_is_ours(const Hostd__V1__Response *resp, uint64_t id)
{
        if (resp->id == id)
                return true;
        return resp->id == 0 && resp->status && resp->status->code != HOSTD__V1__CODE__OK;
}

static int check_result(struct hostd_client *c, const Hostd__V1__Response *resp,
                        Hostd__V1__Response__ResultCase expected)
{
        if (resp->result_case == expected)
                return 0;
        const ProtobufCFieldDescriptor *got = protobuf_c_message_descriptor_get_field(
                &hostd__v1__response__descriptor, (unsigned)resp->result_case);
        const ProtobufCFieldDescriptor *want = protobuf_c_message_descriptor_get_field(
                &hostd__v1__response__descriptor, (unsigned)expected);
        if (!got)
                return client_fail(c, -EPROTO,
                                   "hostd answered without a result where '%s' was expected",
                                   want ? want->name : "?");
        return client_fail(c, -EPROTO, "hostd answered with a '%s' result where '%s' was expected",
                           got->name, want ? want->name : "?");
}

static uint64_t fresh_id(struct hostd_client *c)
{
        uint64_t id = c->next_id++;
        if (id == 0) /* id 0 is reserved for hostd's connection-level errors */
                id = c->next_id++;
        return id;
}

int hostd_client_call(struct hostd_client *c, Hostd__V1__Request *req,
                      Hostd__V1__Response__ResultCase expected, Hostd__V1__Response **ret)
{
        c->error[0] = 0;
        c->code = HOSTD__V1__CODE__OK;
        req->id = fresh_id(c);

        uint64_t deadline = deadline_from_now(c);
        int r = send_request(c, req, deadline);
        if (r < 0)
                return r;

        for (;;) {
                Hostd__V1__Response *resp;
                r = read_response(c, deadline, &resp);
                if (r < 0)
                        return r;
                if (!response_is_ours(resp, req->id)) {
                        /* Left over from an earlier call (a stream we stopped reading). */
                        hostd__v1__response__free_unpacked(resp, NULL);
                        continue;
                }
                r = check_status(c, resp);
                if (r >= 0)
                        r = check_result(c, resp, expected);
                if (r < 0) {
                        hostd__v1__response__free_unpacked(resp, NULL);
                        return r;
                }
                *ret = resp;
                return 0;
        }
}

int hostd_client_stream(struct hostd_client *c, Hostd__V1__Request *req,
                        Hostd__V1__Response__ResultCase expected, hostd_stream_cb_t cb,
                        void *userdata)
{
        c->error[0] = 0;
        c->code = HOSTD__V1__CODE__OK;
        req->id = fresh_id(c);

        uint64_t deadline = deadline_from_now(c);
        int r = send_request(c, req, deadline);
        if (r < 0)
                return r;

        for (;;) {
                Hostd__V1__Response *resp;
                r = read_response(c, deadline, &resp);
                if (r < 0)
                        return r;
                if (!response_is_ours(resp, req->id)) {
                        hostd__v1__response__free_unpacked(resp, NULL);
                        continue;
                }
                deadline = UINT64_MAX;

                bool end = resp->end_of_stream;
                r = check_status(c, resp);
                /* The closing Response may be a bare marker without a result. */
                if (r >= 0 && !(end && resp->result_case == HOSTD__V1__RESPONSE__RESULT__NOT_SET)) {
                        r = check_result(c, resp, expected);
                        if (r >= 0)
                                r = cb(resp, userdata);
                }
                hostd__v1__response__free_unpacked(resp, NULL);
                if (r < 0)
                        return r;
                if (end)
                        return 0;
        }
}

int hostd_client_call_progress(struct hostd_client *c, Hostd__V1__Request *req,
                               Hostd__V1__Response__ResultCase progress, hostd_stream_cb_t cb,
                               void *userdata, Hostd__V1__Response__ResultCase expected,
                               Hostd__V1__Response **ret)
{
        c->error[0] = 0;
        c->code = HOSTD__V1__CODE__OK;
        req->id = fresh_id(c);

        int r = send_request(c, req, deadline_from_now(c));
        if (r < 0)
                return r;

        bool reported = false;
        for (;;) {
                Hostd__V1__Response *resp;
                /* A fresh deadline for each wait: a long import is fine, a silent one is not. */
                r = read_response(c, deadline_from_now(c), &resp);
                if (r == -ETIMEDOUT && reported)
                        return client_fail(c, r, "hostd reported no progress for %" PRId64 " s",
                                           (c->timeout_ms + 999) / 1000);
                if (r < 0)
                        return r;
                if (!response_is_ours(resp, req->id)) {
                        hostd__v1__response__free_unpacked(resp, NULL);
                        continue;
                }

                r = check_status(c, resp);
                if (r >= 0 && resp->result_case == expected) {
                        *ret = resp;
                        return 0;
                }
                if (r >= 0 && resp->end_of_stream &&
                    resp->result_case == HOSTD__V1__RESPONSE__RESULT__NOT_SET)
                        r = client_fail(c, -EPROTO, "hostd ended the call without an answer");
                else if (r >= 0) {
                        r = check_result(c, resp, progress);
                        if (r >= 0)
                                r = cb(resp, userdata);
                        if (r >= 0 && resp->end_of_stream)
                                r = client_fail(c, -EPROTO,
                                                "hostd ended the call without an answer");
                }
                hostd__v1__response__free_unpacked(resp, NULL);
                if (r < 0)
                        return r;
                reported = true;
        }
}
