/* The commands of hostd's image store: images ls, import, rm and gc, under "images". */
#include <inttypes.h>
#include <strings.h>
#include <sys/ioctl.h>

#include "command.h"
#include "commands.h"
#include "exit-status.h"
#include "output.h"

#define DIGEST_SHORT 12
/* How often the progress bar is redrawn at most. */
#define PROGRESS_REDRAW_USEC (100 * 1000)
/* How often a plain progress line is printed at most, besides one per tenth of the total. */
#define PROGRESS_LINE_USEC (1000 * 1000)

static const char images_help[] =
        "Usage: hostctl images COMMAND [ARGS...]\n"
        "\n"
        "Manage hostd's image store: stacks (base root filesystems) and slugs (the app, a\n"
        "tarball of /app), each named by the sha256 of its tarball, its digest.\n"
        "\n"
        "Commands:\n"
        "  ls [--no-trunc]          list the images\n"
        "  import SOURCE --sha256 HEX --kind stack|slug\n"
        "                           fetch, verify and unpack a tarball, with progress\n"
        "  rm DIGEST                remove an image no dyno uses\n"
        "  gc [--budget BYTES]      remove unused images, least recently used first, until\n"
        "                           the store fits the budget\n"
        "\n"
        "\"hostctl images COMMAND --help\" describes each.\n"
        "\n" COMMON_HELP;

static const char *kind_name(Hostd__V1__ImageKind k, char buf[static 32])
{
        return enum_name(&hostd__v1__image_kind__descriptor, (int)k, buf);
}

/* A sha256 as hostd names images: 64 hex digits, lower-cased into out. */
static bool parse_digest(const char *s, char out[static 65])
{
        if (strlen(s) != 64)
                return false;
        for (size_t i = 0; i < 64; i++) {
                char ch = s[i] >= 'A' && s[i] <= 'F' ? (char)(s[i] - 'A' + 'a') : s[i];
                if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
                        return false;
                out[i] = ch;
        }
        out[64] = 0;
        return true;
}

/* Bytes as the config file writes them: digits, or a number (with an optional fraction)
 * and one of the units K, M, G, T (binary multiples): "0", "1048576", "512M", "2.5G".
 * Nothing else: no sign, exponent, hex, space or lower-case unit. */
static int parse_bytes_flag(const char *cmd, const char *flag, const char *arg, uint64_t *ret)
{
        const char *p = arg;
        size_t digits = strspn(p, "0123456789");
        bool fraction = false, unit = false;

        p += digits;
        if (digits > 0 && *p == '.') {
                size_t n = strspn(p + 1, "0123456789");
                fraction = n > 0;
                p += n > 0 ? n + 1 : 0;
        }
        if (digits > 0 && *p && strchr("KMGT", *p)) {
                unit = true;
                p++;
        }
        if (digits == 0 || *p || (fraction && !unit))
                return usage_error(cmd,
                                   "%s: '%s' is not a size (expected bytes, or a number with K, "
                                   "M, G or T: 512M, 2G)",
                                   flag, arg);
        int r = unit ? parse_size(arg, ret) : safe_atou64(arg, ret);
        if (r == -ERANGE)
                return usage_error(cmd, "%s: '%s' is out of range", flag, arg);
        if (r < 0)
                return usage_error(cmd, "%s: '%s' is not a size", flag, arg);
        return EXIT_OK;
}

/* The table of "images ls" (digests cut to DIGEST_SHORT unless no_trunc). */
static int print_images(const char *cmd, Hostd__V1__Image *const *images, size_t n, bool no_trunc)
{
        static const char *const header[] = { "DIGEST", "KIND",     "SIZE",
                                              "USERS",  "IMPORTED", "LAST USED" };
        struct table t = { .n_cols = ELEMENTSOF(header) };
        int64_t now = now_realtime_usec();
        for (size_t i = 0; i < ELEMENTSOF(header); i++)
                if (table_add(&t, header[i]) < 0)
                        goto oom;
        for (size_t i = 0; i < n; i++) {
                const Hostd__V1__Image *img = images[i];
                char digest[DIGEST_SHORT + 1], kb[32], sb[32], ub[16], ib[48], lb[48];
                const char *d = or_dash(img->digest);
                if (!no_trunc) {
                        snprintf(digest, sizeof digest, "%s", d);
                        d = digest;
                }
                snprintf(ub, sizeof ub, "%" PRIu32, img->users);
                if (table_add(&t, d) < 0 || table_add(&t, kind_name(img->kind, kb)) < 0 ||
                    table_add(&t, format_bytes_human(img->size_bytes, sb)) < 0 ||
                    table_add(&t, ub) < 0 ||
                    table_add(&t, format_age(img->imported_usec, now, "-", ib)) < 0 ||
                    table_add(&t, format_age(img->last_used_usec, now, "never", lb)) < 0)
                        goto oom;
        }
        table_print(&t);
        table_free(&t);
        return EXIT_OK;
oom:
        table_free(&t);
        fprintf(stderr, "hostctl: %s: out of memory\n", cmd);
        return EXIT_REMOTE;
}

/* ---- images ls ---- */

static const char images_ls_help[] =
        "Usage: hostctl images ls [--no-trunc]\n"
        "\n"
        "List the images in hostd's store: DIGEST, KIND (stack or slug), SIZE (unpacked),\n"
        "USERS (dynos using it), IMPORTED and LAST USED (how long ago). With --json, an object\n"
        "{\"images\": [...]} of Image objects (digest, kind, size_bytes, imported_usec,\n"
        "last_used_usec, users).\n"
        "\n"
        "      --no-trunc         show whole digests (their first 12 digits otherwise)\n"
        "\n" COMMON_HELP;

struct ls_state {
        bool no_trunc;
};
static const struct ls_state ls_defaults = {};

static int ls_option(struct invocation *inv, int c, const char *arg)
{
        struct ls_state *s = inv->state;
        if (c == OPT_NO_TRUNC)
                s->no_trunc = true;
        return EXIT_OK;
}

static int ls_run(struct invocation *inv, struct grpc_client *c)
{
        const struct ls_state *s = inv->state;
        Hostd__V1__ListImagesRequest req = HOSTD__V1__LIST_IMAGES_REQUEST__INIT;
        _cleanup_message_ Hostd__V1__ListImagesResponse *reply = NULL;
        int r = UNARY(c, "ListImages", &req, hostd__v1__list_images_response, &reply);
        if (r < 0)
                return call_failed(c, r, inv->name);
        if (inv->g->json)
                return print_message_json(&reply->base);
        return print_images(inv->name, reply->images, reply->n_images, s->no_trunc);
}

static const struct option ls_options[] = {
        COMMON_LONG_OPTIONS,
        { "no-trunc", no_argument, NULL, OPT_NO_TRUNC },
        {},
};

static const struct command images_ls = {
        .name = "ls",
        .help = images_ls_help,
        .optstring = ":h",
        .options = ls_options,
        COMMAND_STATE(ls_defaults),
        .option = ls_option,
        .prepare = command_no_args,
        .run = ls_run,
        .connects = true,
};

/* ---- images import ---- */

static const char images_import_help[] =
        "Usage: hostctl images import SOURCE --sha256 HEX --kind stack|slug\n"
        "\n"
        "Have hostd fetch a stack or slug tarball, check its sha256 and unpack it into its\n"
        "store, then show the image as \"images ls\" does (with --json, the Image object).\n"
        "Importing an image that is there already shows it and changes nothing.\n"
        "\n"
        "SOURCE is an absolute path, or a file:///PATH, http:// or https:// URL. hostd reads\n"
        "it itself, so a relative path is first made absolute against the current folder.\n"
        "\n"
        "      --sha256 HEX       the tarball's sha256: 64 hex digits (required)\n"
        "      --kind KIND        stack (a base root filesystem) or slug (a tarball of\n"
        "                         /app) (required)\n"
        "\n"
        "Progress goes to standard error: a bar on a terminal, else a line at most every\n"
        "tenth of the total or every second (\"import 1a2b3c4d5e6f: 45.2M of 100.0M\").\n"
        "--timeout applies to each wait for hostd's next report, not to the whole import;\n"
        "once the whole tarball is fetched, hostctl waits for the unpacking without a limit.\n"
        "\n" COMMON_HELP;

struct import_state {
        char sha256[65]; /* empty until --sha256 */
        Hostd__V1__ImageKind kind;
        char *source; /* as hostd takes it */
};
static const struct import_state import_defaults = {};

static int import_option(struct invocation *inv, int c, const char *arg)
{
        struct import_state *o = inv->state;
        if (c == OPT_SHA256 && !parse_digest(arg, o->sha256))
                return usage_error(inv->name,
                                   "--sha256: '%s' is not a sha256 (expected 64 hex digits)", arg);
        if (c == OPT_KIND) {
                if (strcasecmp(arg, "stack") == 0)
                        o->kind = HOSTD__V1__IMAGE_KIND__IMAGE_KIND_STACK;
                else if (strcasecmp(arg, "slug") == 0)
                        o->kind = HOSTD__V1__IMAGE_KIND__IMAGE_KIND_SLUG;
                else
                        return usage_error(inv->name,
                                           "--kind: unknown kind '%s' (expected stack or slug)",
                                           arg);
        }
        return EXIT_OK;
}

/* "ftp://host/x", "s3://bucket/x": a scheme (RFC 3986: a letter, then letters, digits, '+',
 * '-', '.') before "://" is a URL hostd cannot fetch, not a relative path. */
static bool has_url_scheme(const char *arg)
{
        const char *sep = strstr(arg, "://");
        size_t n = sep ? (size_t)(sep - arg) : 0;
        return n > 0 && ((arg[0] >= 'a' && arg[0] <= 'z') || (arg[0] >= 'A' && arg[0] <= 'Z')) &&
               strspn(arg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.") ==
                       n;
}

/* The source as hostd takes it. hostd opens a path itself, from its own working folder, so a
 * relative one is made absolute here, against ours. */
static int import_source(const char *cmd, const char *arg, char **ret)
{
        _cleanup_free_ char *cwd = NULL;
        if (!*arg)
                return usage_error(cmd, "empty SOURCE");
        bool as_is = (startswith(arg, "http://") && arg[strlen("http://")]) ||
                     (startswith(arg, "https://") && arg[strlen("https://")]) ||
                     startswith(arg, "file:///") || arg[0] == '/';
        if (!as_is) {
                if (strcmp(arg, "http://") == 0 || strcmp(arg, "https://") == 0)
                        return usage_error(cmd, "'%s': the URL names no host", arg);
                if (startswith(arg, "file://"))
                        return usage_error(
                                cmd, "'%s': a file:// URL names an absolute path: file:///PATH",
                                arg);
                if (has_url_scheme(arg))
                        return usage_error(cmd,
                                           "'%s': unsupported source (expected a path, or a "
                                           "file:///, http:// or https:// URL)",
                                           arg);
                cwd = get_current_dir_name();
                if (!cwd) {
                        fprintf(stderr, "hostctl: %s: %s: make the path absolute: %m\n", cmd, arg);
                        return EXIT_USAGE;
                }
                while (startswith(arg, "./"))
                        arg += 2;
        }
        *ret = as_is ? strdup(arg) : strjoin3(cwd, strcmp(cwd, "/") == 0 ? "" : "/", arg);
        if (!*ret) {
                fprintf(stderr, "hostctl: out of memory\n");
                return EXIT_REMOTE;
        }
        return EXIT_OK;
}

struct import_progress {
        int64_t wait_ms; /* the limit of each wait for hostd's next report; -1: none */
        char digest[DIGEST_SHORT + 1];
        bool tty;            /* draw a bar on stderr, else print lines */
        bool drawn;          /* the bar is on stderr, its line not ended */
        uint64_t shown;      /* bytes in the last line or bar, */
        uint64_t shown_usec; /* and when it was written; 0: nothing yet */
        int shown_tenth;     /* tenths of the total in the last line */
        bool reported;       /* hostd sent a report */
};

static size_t stderr_columns(void)
{
        struct winsize ws;
        if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
                return ws.ws_col;
        return 80;
}

/* "[=========>          ] 45.2M/100.0M  45%", or a counter when hostd does not know the
 * total; redrawn in place, one column short of the width so that no terminal wraps it. */
static void progress_draw(struct import_progress *p, uint64_t done, uint64_t total)
{
        char a[32], b[32], text[96];
        if (total == 0) {
                fprintf(stderr, "\rimport %s: %s\033[K", p->digest, format_progress_bytes(done, a));
                p->drawn = true;
                return;
        }
        if (done > total)
                done = total;
        unsigned pct = (unsigned)((double)done * 100 / (double)total);
        snprintf(text, sizeof text, " %s/%s %3u%%", format_progress_bytes(done, a),
                 format_progress_bytes(total, b), pct);
        /* The bar's width is that of the longest text, "TOTAL/TOTAL 100%", so that it stays. */
        size_t cols = stderr_columns(), width = 40, longest = 2 * strlen(b) + 7;
        if (cols < longest + 3 + 10) {
                fprintf(stderr, "\r%s\033[K", text + 1);
                p->drawn = true;
                return;
        }
        if (width > cols - longest - 3)
                width = cols - longest - 3;
        size_t filled = (size_t)((double)done * (double)width / (double)total);
        char bar[64];
        for (size_t i = 0; i < width; i++)
                bar[i] = i < filled ? '=' : i == filled ? '>' : ' ';
        bar[width] = 0;
        fprintf(stderr, "\r[%s]%s\033[K", bar, text);
        p->drawn = true;
}

static void progress_end_line(struct import_progress *p)
{
        if (p->drawn)
                fputc('\n', stderr);
        p->drawn = false;
}

static int import_on_progress(struct import_progress *p, const Hostd__V1__ImportImageProgress *ip)
{
        uint64_t done = ip->done_bytes, total = ip->total_bytes, now = now_monotonic_usec();
        bool complete = total > 0 && done >= total;

        /* The tarball is all there: hostd now unpacks it without reporting, for as long as
         * that takes (a vanished hostd or importer still ends the call). */
        if (complete)
                p->wait_ms = -1;

        if (p->tty) {
                if (p->shown_usec == 0 || complete || now - p->shown_usec >= PROGRESS_REDRAW_USEC) {
                        progress_draw(p, done, total);
                        p->shown = done;
                        p->shown_usec = now;
                }
                return 0;
        }

        int tenth = total > 0 ? (int)((double)(done < total ? done : total) * 10 / (double)total) :
                                -1;
        bool due = p->shown_usec == 0 || (total > 0 && tenth > p->shown_tenth) ||
                   (done != p->shown && now - p->shown_usec >= PROGRESS_LINE_USEC);
        if (!due)
                return 0;
        char a[32], b[32];
        if (total > 0)
                fprintf(stderr, "import %s: %s of %s\n", p->digest, format_progress_bytes(done, a),
                        format_progress_bytes(total, b));
        else
                fprintf(stderr, "import %s: %s\n", p->digest, format_progress_bytes(done, a));
        p->shown = done;
        p->shown_usec = now;
        p->shown_tenth = tenth;
        return 0;
}

static int import_prepare(struct invocation *inv)
{
        struct import_state *o = inv->state;
        const char *cmd = inv->name;
        if (inv->n_args == 0)
                return usage_error(cmd, "missing SOURCE");
        if (inv->n_args > 1)
                return usage_error(cmd, "unexpected argument '%s'", inv->args[1]);
        if (!o->sha256[0])
                return usage_error(cmd, "--sha256 is required");
        if (o->kind == HOSTD__V1__IMAGE_KIND__IMAGE_KIND_UNSPECIFIED)
                return usage_error(cmd, "--kind is required (stack or slug)");
        return import_source(cmd, inv->args[0], &o->source);
}

/* One message of the import: a report before the image, or the image (*answer). -EPROTO
 * for anything else. */
static int import_take(struct grpc_client *c, struct import_progress *p,
                       Hostd__V1__ImportImageResponse *m, Hostd__V1__ImportImageResponse **answer)
{
        if (m->kind_case == HOSTD__V1__IMPORT_IMAGE_RESPONSE__KIND_PROGRESS && !*answer) {
                import_on_progress(p, m->progress);
                p->reported = true;
                protobuf_c_message_free_unpacked(&m->base, NULL);
                return 0;
        }
        if (m->kind_case == HOSTD__V1__IMPORT_IMAGE_RESPONSE__KIND_IMAGE && !*answer) {
                *answer = m; /* the last message; the status follows */
                return 0;
        }
        protobuf_c_message_free_unpacked(&m->base, NULL);
        snprintf(c->error, sizeof c->error,
                 "hostd answered the import with a message after the image, or one of no kind");
        return -EPROTO;
}

/* hostd's reports, then the image (*ret) and the end of the call: 0, or a negative errno
 * with c->error saying why. */
static int import_receive(struct grpc_client *c, struct grpc_call *call, struct import_progress *p,
                          Hostd__V1__ImportImageResponse **ret)
{
        _cleanup_message_ Hostd__V1__ImportImageResponse *answer = NULL;
        for (;;) {
                Hostd__V1__ImportImageResponse *m = NULL;
                int64_t wait_ms = p->wait_ms;
                uint64_t until = wait_ms >= 0 ? now_monotonic_usec() + (uint64_t)wait_ms * 1000 :
                                                UINT64_MAX;
                int r = grpc_call_recv(call, &hostd__v1__import_image_response__descriptor, until,
                                       (ProtobufCMessage **)&m);
                if (r == -ETIMEDOUT) {
                        snprintf(c->error, sizeof c->error,
                                 p->reported ? "hostd reported no progress for %" PRId64 " s" :
                                               "no reply from hostd within %" PRId64 " s",
                                 (wait_ms + 999) / 1000);
                        return r;
                }
                if (r == 0 && !answer) {
                        snprintf(c->error, sizeof c->error,
                                 "hostd ended the import without the image");
                        return -EPROTO;
                }
                if (r == 0) {
                        *ret = TAKE_PTR(answer);
                        return 0;
                }
                if (r < 0)
                        return r;
                r = import_take(c, p, m, &answer);
                if (r < 0)
                        return r;
        }
}

static int import_run(struct invocation *inv, struct grpc_client *c)
{
        const struct import_state *o = inv->state;
        struct import_progress p = { .wait_ms = c->timeout_ms, .tty = isatty(STDERR_FILENO) };
        snprintf(p.digest, sizeof p.digest, "%.*s", DIGEST_SHORT, o->sha256);
        char what[64];
        snprintf(what, sizeof what, "%s %s", inv->name, p.digest);

        Hostd__V1__ImportImageRequest req = HOSTD__V1__IMPORT_IMAGE_REQUEST__INIT;
        req.source = o->source;
        req.sha256 = (char *)o->sha256;
        req.kind = o->kind;
        /* No grpc-timeout: an import takes as long as its tarball does. --timeout bounds each
         * wait for hostd's next report instead. */
        _cleanup_(grpc_call_done) struct grpc_call call = {};
        int r = grpc_call_start(c, &call, "ImportImage", -1);
        if (r >= 0)
                r = grpc_call_send(&call, &req.base, true);
        _cleanup_message_ Hostd__V1__ImportImageResponse *answer = NULL;
        if (r >= 0)
                r = import_receive(c, &call, &p, &answer);
        progress_end_line(&p);
        if (r < 0)
                return call_failed(c, r, what);
        if (inv->g->json)
                return print_message_json(&answer->image->base);
        return print_images(inv->name, &answer->image, 1, false);
}

static void import_done(struct invocation *inv)
{
        struct import_state *o = inv->state;
        free(o->source);
}

static const struct option import_options[] = {
        COMMON_LONG_OPTIONS,
        { "sha256", required_argument, NULL, OPT_SHA256 },
        { "kind", required_argument, NULL, OPT_KIND },
        {},
};

static const struct command images_import = {
        .name = "import",
        .help = images_import_help,
        .optstring = ":h",
        .options = import_options,
        COMMAND_STATE(import_defaults),
        .option = import_option,
        .prepare = import_prepare,
        .run = import_run,
        .done = import_done,
        .connects = true,
};

/* ---- images rm ---- */

static const char images_rm_help[] =
        "Usage: hostctl images rm DIGEST\n"
        "\n"
        "Remove an image from hostd's store. DIGEST is its whole sha256, 64 hex digits\n"
        "(\"hostctl images ls --no-trunc\" shows them). An image that a dyno uses, running or\n"
        "starting, stays (FAILED_PRECONDITION). With --json: {\"removed\": [DIGEST]}.\n"
        "\n" COMMON_HELP;

struct rm_state {
        char digest[65];
};
static const struct rm_state rm_defaults = {};

static int rm_prepare(struct invocation *inv)
{
        struct rm_state *s = inv->state;
        if (inv->n_args == 0)
                return usage_error(inv->name, "missing DIGEST");
        if (inv->n_args > 1)
                return usage_error(inv->name, "unexpected argument '%s'", inv->args[1]);
        /* No prefixes: removing is not undone, and a prefix that is unique now may not be
         * by the time hostd acts on it. */
        if (!parse_digest(inv->args[0], s->digest))
                return usage_error(inv->name,
                                   "'%s' is not a whole digest (64 hex digits; \"hostctl images "
                                   "ls --no-trunc\" shows them)",
                                   inv->args[0]);
        return EXIT_OK;
}

/* RemoveImageResponse is empty: say what went, in gc's shape. */
static int print_removed_json(const char *digest)
{
        _cleanup_json_ struct json_object *o = json_object_new_object();
        struct json_object *a = json_object_new_array();
        if (!o || !a) {
                json_object_put(a);
                return print_json(NULL, true);
        }
        json_object_array_add(a, json_object_new_string(digest));
        json_object_object_add(o, "removed", a);
        return print_json(o, true);
}

static int rm_run(struct invocation *inv, struct grpc_client *c)
{
        struct rm_state *s = inv->state;
        Hostd__V1__RemoveImageRequest req = HOSTD__V1__REMOVE_IMAGE_REQUEST__INIT;
        req.digest = s->digest;
        _cleanup_message_ Hostd__V1__RemoveImageResponse *resp = NULL;
        int r = UNARY(c, "RemoveImage", &req, hostd__v1__remove_image_response, &resp);
        if (r < 0)
                return call_failed(c, r, inv->name);
        if (inv->g->json)
                return print_removed_json(s->digest);
        printf("removed %s\n", s->digest);
        return EXIT_OK;
}

static const struct command images_rm = {
        .name = "rm",
        .help = images_rm_help,
        .optstring = ":h",
        .options = common_options,
        COMMAND_STATE(rm_defaults),
        .prepare = rm_prepare,
        .run = rm_run,
        .connects = true,
};

/* ---- images gc ---- */

static const char images_gc_help[] =
        "Usage: hostctl images gc [--budget BYTES]\n"
        "\n"
        "Remove images that no dyno uses, least recently used first, until the store's\n"
        "images add up to at most the budget; print each digest removed and the bytes\n"
        "freed. With --json: {\"removed\": [DIGEST...], \"freed_bytes\": N}.\n"
        "\n"
        "      --budget BYTES     the budget, in bytes or with a unit K, M, G or T (binary\n"
        "                         multiples, as in hostd's config: 512M, 2G, 1.5T)\n"
        "                         (default: hostd's images-budget)\n"
        "\n" COMMON_HELP;

struct gc_state {
        uint64_t budget;
        bool budget_set; /* else hostd's images-budget */
};
static const struct gc_state gc_defaults = {};

static int gc_option(struct invocation *inv, int c, const char *arg)
{
        struct gc_state *o = inv->state;
        if (c == OPT_BUDGET) {
                o->budget_set = true;
                return parse_bytes_flag(inv->name, "--budget", arg, &o->budget);
        }
        return EXIT_OK;
}

static int gc_run(struct invocation *inv, struct grpc_client *c)
{
        const struct gc_state *o = inv->state;
        Hostd__V1__PruneImagesRequest req = HOSTD__V1__PRUNE_IMAGES_REQUEST__INIT;
        if (o->budget_set) {
                req.budget_case = HOSTD__V1__PRUNE_IMAGES_REQUEST__BUDGET_BUDGET_BYTES;
                req.budget_bytes = o->budget;
        }
        _cleanup_message_ Hostd__V1__PruneImagesResponse *reply = NULL;
        int r = UNARY(c, "PruneImages", &req, hostd__v1__prune_images_response, &reply);
        if (r < 0)
                return call_failed(c, r, inv->name);
        if (inv->g->json)
                return print_message_json(&reply->base);

        char b[32];
        for (size_t i = 0; i < reply->n_removed; i++) {
                _cleanup_free_ char *d = escape_str(reply->removed[i]);
                printf("removed %s\n", d ? d : "?");
        }
        printf("freed %s (%zu image%s)\n", format_bytes_human(reply->freed_bytes, b),
               reply->n_removed, reply->n_removed == 1 ? "" : "s");
        return EXIT_OK;
}

static const struct option gc_options[] = {
        COMMON_LONG_OPTIONS,
        { "budget", required_argument, NULL, OPT_BUDGET },
        {},
};

static const struct command images_gc = {
        .name = "gc",
        .help = images_gc_help,
        .optstring = ":h",
        .options = gc_options,
        COMMAND_STATE(gc_defaults),
        .option = gc_option,
        .prepare = command_no_args,
        .run = gc_run,
        .connects = true,
};

/* ---- images: the group ---- */

static const struct command *const images_commands[] = {
        &images_ls,
        &images_import,
        &images_rm,
        &images_gc,
};

static int images_run(struct invocation *inv, struct grpc_client *c)
{
        if (inv->n_args == 0)
                return usage_error("images", "missing command (ls, import, rm or gc)");
        const char *name = inv->args[0];
        const struct command *sub =
                command_find(images_commands, ELEMENTSOF(images_commands), name);
        if (!sub)
                return usage_error("images", "unknown command '%s' (expected ls, import, rm or gc)",
                                   name);
        /* The sub-command's messages name it in full: "hostctl: images rm: ...",
         * "Try 'hostctl images rm --help'." */
        char full[32];
        snprintf(full, sizeof full, "images %s", name);
        return command_invoke(sub, full, inv->g, (int)inv->n_args, inv->args);
}

const struct command command_images = {
        .name = "images",
        .help = images_help,
        /* '+': options up to the sub-command are the group's, the rest are the sub-command's. */
        .optstring = "+:h",
        .options = common_options,
        .run = images_run,
        .connects = false,
};
