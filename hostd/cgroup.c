/* cgroup driver: mode detection, hostd's own cgroup, validation, and the operations that are
 * the same on v1 and v2; the rest dispatches through struct cg_ops (cgroup-v1.c,
 * cgroup-v2.c). */
#include "cgroup-internal.h"
#include "util.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libcgroup.h>
#include <limits.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/statfs.h>
#include <time.h>

#define CG_MOUNT "/sys/fs/cgroup"
/* How long cg_destroy waits for the killed processes to leave before giving up. */
#define CG_DESTROY_TIMEOUT_USEC (5 * 1000 * 1000ULL)

static const char *const controller_names[_CG_CTRL_MAX] = {
        [CG_CTRL_MEMORY] = "memory", [CG_CTRL_CPU] = "cpu",         [CG_CTRL_CPUACCT] = "cpuacct",
        [CG_CTRL_PIDS] = "pids",     [CG_CTRL_FREEZER] = "freezer", [CG_CTRL_CPUSET] = "cpuset",
};

const char *cg_controller_name(enum cg_controller c)
{
        return c >= 0 && c < _CG_CTRL_MAX ? controller_names[c] : NULL;
}

const char *cg_mode_name(enum cg_mode mode) { return mode == CG_MODE_V2 ? "v2" : "v1"; }

enum cg_mode cg_manager_mode(const struct cg_manager *m) { return m->ops->mode; }

struct cg_hier *cg_hier_for(struct cg_manager *m, enum cg_controller c)
{
        if (c < 0 || c >= _CG_CTRL_MAX || m->hier_of[c] < 0)
                return NULL;
        return &m->hier[m->hier_of[c]];
}

struct cg_hier *cg_primary(struct cg_manager *m) { return cg_hier_for(m, CG_CTRL_MEMORY); }

/* ---- validation ---- */

static int validate_root_rel(const char *s)
{
        if (!s)
                return -EINVAL;
        if (!*s)
                return 0;
        if (strlen(s) >= PATH_MAX / 2)
                return -EINVAL;
        const char *p = s;
        for (;;) {
                size_t n = strcspn(p, "/");
                /* Empty components ("a//b", "/a", "a/") and dot components could name a
                 * place outside the subtree or an unexpected one. */
                if (n == 0 || n > NAME_MAX)
                        return -EINVAL;
                if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
                        return -EINVAL;
                if (!p[n])
                        return 0;
                p += n + 1;
        }
}

int cg_validate_id(const char *id)
{
        /* The callers check what came from the wire; this keeps a bad name from ever leaving
         * dynos/ (one grammar with netd's: an instance's name). */
        return id && dyno_instance_name_valid(id) ? 0 : -EINVAL;
}

/* ---- paths ---- */

/* Is the configured parent of the dynos (dynos-cgroup) usable in this hierarchy? 1: yes; 0: it
 * is not there, and this is a v1 hierarchy other than memory's, which then keeps the own
 * cgroup as its top (systemd makes a unit's cgroup only in the hierarchies of the controllers it
 * manages, not v1's cpuset; elsewhere hostd's own place may differ per hierarchy); -ENOENT:
 * missing in the unified or the memory hierarchy; -ELOOP: it is hostd's own cgroup or one of its
 * ancestors, where the dynos would share hostd's unit (the very thing the setting avoids);
 * -EACCES, -EROFS: hostd may not write there; -ENOTDIR. */
static int cg_check_parent(const struct cg_manager *m, enum cg_controller c, const char *mount,
                           const char *own)
{
        size_t n = strlen(m->parent_rel);
        if (strncmp(own, m->parent_rel, n) == 0 && (own[n] == 0 || own[n] == '/'))
                return -ELOOP;
        _cleanup_free_ char *dir = strjoin3(mount, m->parent_rel, NULL);
        if (!dir)
                return -ENOMEM;
        struct stat st;
        if (stat(dir, &st) < 0) {
                if (errno == ENOENT && c != CG_CTRL_MEMORY)
                        return 0;
                return -errno;
        }
        if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        if (access(dir, W_OK) < 0)
                return -errno;
        return 1;
}

int cg_add_hier(struct cg_manager *m, enum cg_controller c, const char *mount, const char *own)
{
        for (size_t i = 0; i < m->n_hier; i++)
                if (strcmp(m->hier[i].mount, mount) == 0) {
                        m->hier[i].ctrls |= 1u << c;
                        m->hier_of[c] = (int)i;
                        return 0;
                }
        if (m->n_hier >= ELEMENTSOF(m->hier))
                return -E2BIG;

        /* Keep "" for the root so that joining never doubles a slash. */
        if (strcmp(own, "/") == 0)
                own = "";
        const char *top = own;
        if (*m->parent_rel) {
                int r = cg_check_parent(m, c, mount, own);
                if (r < 0)
                        return r;
                if (r > 0)
                        top = m->parent_rel;
        }
        struct cg_hier *h = &m->hier[m->n_hier];
        *h = (struct cg_hier){ .ctrls = 1u << c };
        h->mount = strdup(mount);
        h->own_rel = strdup(own);
        h->top_rel = strdup(top);
        h->lib_ctrl = strdup(cg_controller_name(c));
        h->base_rel = strjoin3(top, *m->root_rel ? "/" : NULL, m->root_rel);
        if (!h->mount || !h->own_rel || !h->top_rel || !h->lib_ctrl || !h->base_rel) {
                free(h->mount);
                free(h->own_rel);
                free(h->top_rel);
                free(h->lib_ctrl);
                free(h->base_rel);
                return -ENOMEM;
        }
        m->hier_of[c] = (int)m->n_hier++;
        return 0;
}

int cg_hier_dyno_rel(const struct cg_manager *m, const struct cg_hier *h, const char *id,
                     char **ret)
{
        return id ? asprintf_safe(ret, "%s/dynos/%s", h->base_rel, id) :
                    asprintf_safe(ret, "%s/dynos", h->base_rel);
}

int cg_hier_dyno_dir(const struct cg_manager *m, const struct cg_hier *h, const char *id,
                     char **ret)
{
        return id ? asprintf_safe(ret, "%s%s/dynos/%s", h->mount, h->base_rel, id) :
                    asprintf_safe(ret, "%s%s/dynos", h->mount, h->base_rel);
}

/* Direct: libcgroup 2.0.2's cgroup_get_current_controller_path fails (ECGOTHER) on a v2 host,
 * whose "0::" line names no controller; one parser serves both modes and cg_contains. */
int cg_proc_cgroup_path(pid_t pid, const char *controller, char **ret)
{
        return cg_proc_cgroup_find(pid, controller, ret, NULL);
}

int cg_proc_cgroup_find(pid_t pid, const char *controller, char **ret, char **ret_controllers)
{
        char path[64];
        if (pid == 0)
                snprintf(path, sizeof path, "/proc/self/cgroup");
        else
                snprintf(path, sizeof path, "/proc/%d/cgroup", (int)pid);

        _cleanup_free_ char *text = NULL;
        int r = read_full_file(path, &text, NULL);
        if (r == -ENOENT)
                return -ESRCH;
        if (r < 0)
                return r;

        for (char *line = text, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                /* "ID:CONTROLLERS:PATH"; the path may itself hold colons. */
                char *c1 = strchr(line, ':');
                char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
                if (!c2)
                        continue;
                *c1 = *c2 = 0;
                const char *ctrls = c1 + 1, *cgpath = c2 + 1;
                bool match = false;
                if (!controller)
                        match = strcmp(line, "0") == 0 && !*ctrls;
                else
                        for (const char *p = ctrls; *p;) {
                                size_t n = strcspn(p, ",");
                                if (n == strlen(controller) && strncmp(p, controller, n) == 0) {
                                        match = true;
                                        break;
                                }
                                p += n + (p[n] == ',');
                        }
                if (!match)
                        continue;
                _cleanup_free_ char *s = strdup(cgpath);
                _cleanup_free_ char *c = ret_controllers ? strdup(ctrls) : NULL;
                if (!s || (ret_controllers && !c))
                        return -ENOMEM;
                *ret = TAKE_PTR(s);
                if (ret_controllers)
                        *ret_controllers = TAKE_PTR(c);
                return 0;
        }
        return -ENOENT;
}

/* ---- cgroupfs helpers ---- */

int cg_write(const char *dir, const char *file, const char *value)
{
        _cleanup_free_ char *p = strjoin3(dir, "/", file);
        if (!p)
                return -ENOMEM;
        return write_string_file(p, value);
}

int cg_write_u64(const char *dir, const char *file, uint64_t value)
{
        char buf[32];
        snprintf(buf, sizeof buf, "%" PRIu64, value);
        return cg_write(dir, file, buf);
}

int cg_read(const char *dir, const char *file, char **ret)
{
        _cleanup_free_ char *p = strjoin3(dir, "/", file);
        if (!p)
                return -ENOMEM;
        char *s;
        size_t n;
        int r = read_full_file(p, &s, &n);
        if (r < 0)
                return r;
        while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
                s[--n] = 0;
        *ret = s;
        return 0;
}

bool cg_file_exists(const char *dir, const char *file)
{
        _cleanup_free_ char *p = strjoin3(dir, "/", file);
        return p && access(p, F_OK) == 0;
}

/* Direct read: libcgroup 2.0.2's cgroup_get_procs opens cgroup.procs without O_CLOEXEC and
 * reports a missing cgroup as ECGROUPUNSUPP, so "gone" could not be told from a failure. */
int cg_read_pids(const char *dir, pid_t **ret, size_t *ret_n)
{
        _cleanup_free_ char *text = NULL;
        int r = cg_read(dir, "cgroup.procs", &text);
        if (r < 0)
                return r;
        size_t n = 0;
        for (const char *p = text; *p; p++)
                n += *p == '\n';
        _cleanup_free_ pid_t *pids = calloc(n + 1, sizeof *pids);
        if (!pids)
                return -ENOMEM;
        size_t k = 0;
        for (char *line = text, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                uint32_t v;
                if (safe_atou32(line, &v) < 0 || v == 0 || v > INT_MAX)
                        return -EBADMSG;
                pids[k++] = (pid_t)v;
        }
        *ret = TAKE_PTR(pids);
        *ret_n = k;
        return 0;
}

int cg_kill_dir(const char *dir, int sig)
{
        _cleanup_free_ pid_t *pids = NULL;
        size_t n;
        int r = cg_read_pids(dir, &pids, &n);
        if (r < 0)
                return r;
        /* A pid read here may exit and be reused before the kill; the window is the time
         * of one read and the callers that must be exact freeze the cgroup first. */
        int count = 0;
        for (size_t i = 0; i < n; i++) {
                if (kill(pids[i], sig) == 0)
                        count++;
                else if (errno != ESRCH)
                        return -errno;
        }
        return count;
}

int cg_mkdir(const char *path)
{
        if (mkdir(path, 0755) == 0)
                return 1;
        if (errno != EEXIST)
                return -errno;
        struct stat st;
        if (stat(path, &st) < 0)
                return -errno;
        return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

/* ---- libcgroup wrappers ---- */

int cg_lib_errno(int ecg)
{
        switch (ecg) {
        case 0: return 0;
        case ECGOTHER: {
                /* The library stores the errno of the failed system call. */
                int e = cgroup_get_last_errno();
                return e > 0 ? -e : -EIO;
        }
        case ECGROUPNOTEXIST:
        case ECGROUPVALUENOTEXIST: return -ENOENT;
        case ECGROUPNOTMOUNTED:
        case ECGROUPSUBSYSNOTMOUNTED: return -ENOMEDIUM;
        case ECGROUPNOTOWNER:
        case ECGROUPNOTALLOWED: return -EPERM;
        case ECGINVAL:
        case ECGROUPNOTINITIALIZED: return -EINVAL;
        case ECGNONEMPTY: return -EBUSY;
        case ECGROUPUNSUPP:
        case ECGROUPNOTCOMPILED: return -EOPNOTSUPP;
        case ECGEOF: return -ENODATA;
        default: return -EIO;
        }
}

int cg_lib_init(void)
{
        static bool done = false;
        if (done)
                return 0;
        int r = cg_lib_errno(cgroup_init());
        if (r < 0)
                return r;
        done = true;
        return 0;
}

int cg_lib_read_key(const struct cg_hier *h, const char *rel, const char *file, const char *key,
                    uint64_t *ret)
{
        /* libcgroup reads the path relative to the mount of the named controller. */
        _cleanup_free_ char *path = strdup(*rel ? rel : "/");
        if (!path)
                return -ENOMEM;
        char line[256];
        void *handle = NULL;
        size_t klen = strlen(key);
        int ecg = cgroup_read_value_begin(h->lib_ctrl, path, (char *)file, &handle, line,
                                          sizeof line);
        int r = -ENOENT;
        while (ecg == 0) {
                if (strncmp(line, key, klen) == 0 && line[klen] == ' ') {
                        line[strcspn(line, "\n")] = 0;
                        r = safe_atou64(line + klen + 1, ret);
                        break;
                }
                ecg = cgroup_read_value_next(&handle, line, sizeof line);
        }
        if (ecg != 0 && ecg != ECGEOF)
                r = cg_lib_errno(ecg);
        if (handle)
                cgroup_read_value_end(&handle);
        return r;
}

/* ---- the manager ---- */

static int detect_mode(enum cg_mode *ret)
{
        struct statfs fs;
        if (statfs(CG_MOUNT, &fs) < 0)
                return errno == ENOENT ? -ENOMEDIUM : -errno;
        if (fs.f_type == CGROUP2_SUPER_MAGIC) {
                *ret = CG_MODE_V2;
                return 0;
        }
        /* Legacy and hybrid: a tmpfs holding one mount per v1 hierarchy. The hybrid's
         * controller-less v2 mount at unified/ is of no use and is ignored. */
        if (fs.f_type == TMPFS_MAGIC || fs.f_type == CGROUP_SUPER_MAGIC) {
                *ret = CG_MODE_V1;
                return 0;
        }
        return -ENOMEDIUM;
}

void cg_manager_free(struct cg_manager *m)
{
        if (!m)
                return;
        if (m->taskstats_tried)
                closep(&m->taskstats_fd);
        for (size_t i = 0; i < m->n_hier; i++) {
                free(m->hier[i].mount);
                free(m->hier[i].own_rel);
                free(m->hier[i].top_rel);
                free(m->hier[i].base_rel);
                free(m->hier[i].lib_ctrl);
                free(m->hier[i].options);
        }
        free(m->root_rel);
        free(m->parent_rel);
        free(m);
}

static void cg_manager_freep(struct cg_manager **m) { cg_manager_free(*m); }

int cg_manager_new(const char *root_rel, const char *parent_rel, struct cg_manager **ret)
{
        int r = validate_root_rel(root_rel);
        if (r < 0)
                return r;
        if (!parent_rel || strcmp(parent_rel, "/") == 0)
                parent_rel = "";
        if (*parent_rel && (parent_rel[0] != '/' || validate_root_rel(parent_rel + 1) < 0))
                return -EINVAL;

        _cleanup_(cg_manager_freep) struct cg_manager *m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(m->hier_of); i++)
                m->hier_of[i] = -1;
        m->root_rel = strdup(root_rel);
        m->parent_rel = strdup(parent_rel);
        if (!m->root_rel || !m->parent_rel)
                return -ENOMEM;

        enum cg_mode mode = CG_MODE_V1;
        /* libcgroup 2.0.2 has no call that tells v1 from v2. */
        r = detect_mode(&mode);
        if (r < 0)
                return r;
        m->ops = mode == CG_MODE_V2 ? &cg_v2_ops : &cg_v1_ops;

        r = m->ops->setup(m);
        if (r < 0)
                return r;
        log_debug("cgroup %s: base %s%s", cg_mode_name(mode), cg_primary(m)->mount,
                  cg_primary(m)->base_rel);
        *ret = TAKE_PTR(m);
        return 0;
}

int cg_create(struct cg_manager *m, const char *id, const struct cg_limits *lim)
{
        int r = cg_validate_id(id);
        if (r < 0)
                return r;
        if (!lim)
                return -EINVAL;
        return m->ops->create(m, id, lim);
}

static int procs_open(struct cg_manager *m, const char *id, bool self, struct cg_procs *ret)
{
        int r = cg_validate_id(id);
        if (r < 0)
                return r;
        struct cg_procs p = CG_PROCS_INIT;
        p.self = self;
        r = m->ops->procs_open(m, id, self, &p);
        if (r < 0) {
                cg_procs_close(&p);
                return r;
        }
        *ret = p;
        return 0;
}

int cg_procs_open(struct cg_manager *m, const char *id, struct cg_procs *ret)
{
        return procs_open(m, id, false, ret);
}

int cg_procs_open_self(struct cg_manager *m, const char *id, struct cg_procs *ret)
{
        return procs_open(m, id, true, ret);
}

/* buf into each of p's files. No allocation, no lock: for a worker thread or a new process. */
static int procs_write_all(const struct cg_procs *p, const char *buf, size_t len)
{
        for (size_t i = 0; i < p->n; i++) {
                ssize_t k;
                while ((k = pwrite(p->fd[i], buf, len, 0)) < 0 && errno == EINTR)
                        ;
                if (k < 0)
                        return -errno;
                if ((size_t)k != len)
                        return -EIO;
        }
        return 0;
}

int cg_procs_join_self(const struct cg_procs *p)
{
        if (!p->self)
                return -EINVAL;
        return procs_write_all(p, "0", 1);
}

int cg_procs_write(const struct cg_procs *p, pid_t pid)
{
        if (pid <= 0 || p->self)
                return -EINVAL;
        char buf[16];
        int len = snprintf(buf, sizeof buf, "%d", (int)pid);
        return procs_write_all(p, buf, (size_t)len);
}

void cg_procs_close(struct cg_procs *p)
{
        closep(&p->dir);
        p->dir = -1;
        for (size_t i = 0; i < p->n; i++)
                closep(&p->fd[i]);
        p->n = 0;
}

int cg_attach(struct cg_manager *m, const char *id, pid_t pid)
{
        if (pid <= 0)
                return -EINVAL;
        struct cg_procs p;
        int r = cg_procs_open(m, id, &p);
        if (r < 0)
                return r;
        r = cg_procs_write(&p, pid);
        cg_procs_close(&p);
        return r;
}

int cg_destroy(struct cg_manager *m, const char *id)
{
        int r = cg_validate_id(id);
        if (r < 0)
                return r;

        r = m->ops->kill(m, id);
        if (r < 0 && r != -ENOENT)
                return r;

        /* Direct rmdir: libcgroup 2.0.2's cgroup_delete_cgroup_ext returns 0 when rmdir fails
         * with EBUSY, so a cgroup that is still there would look removed. */
        uint64_t deadline = now_monotonic_usec() + CG_DESTROY_TIMEOUT_USEC;
        useconds_t delay = 500;
        for (;;) {
                bool busy = false;
                for (size_t i = 0; i < m->n_hier; i++) {
                        _cleanup_free_ char *dir = NULL;
                        r = cg_hier_dyno_dir(m, &m->hier[i], id, &dir);
                        if (r < 0)
                                return r;
                        /* Kill again each round: without a freezer a process may have
                         * forked after the first kill. */
                        r = cg_kill_dir(dir, SIGKILL);
                        if (r == -ENOENT)
                                continue;
                        if (r < 0)
                                return r;
                        if (rmdir(dir) == 0 || errno == ENOENT)
                                continue;
                        if (errno != EBUSY)
                                return -errno;
                        /* Empty cgroup.procs can still be busy while the killed tasks
                         * finish exiting. */
                        busy = true;
                }
                if (!busy)
                        return 0;
                if (now_monotonic_usec() >= deadline)
                        return -EBUSY;
                usleep(delay);
                if (delay < 20000)
                        delay *= 2;
        }
}

int cg_signal_all(struct cg_manager *m, const char *id, int sig)
{
        int r = cg_validate_id(id);
        if (r < 0)
                return r;
        _cleanup_free_ char *dir = NULL;
        r = cg_hier_dyno_dir(m, cg_primary(m), id, &dir);
        if (r < 0)
                return r;
        return cg_kill_dir(dir, sig);
}

int cg_kill(struct cg_manager *m, const char *id)
{
        int r = cg_validate_id(id);
        if (r < 0)
                return r;
        return m->ops->kill(m, id);
}

int cg_dyno_view(struct cg_manager *m, const char *id, struct cg_view *ret)
{
        int r = cg_validate_id(id);
        if (r < 0)
                return r;
        *ret = (struct cg_view){ .v2 = m->ops->mode == CG_MODE_V2 };
        if (ret->v2)
                return 0;
        for (size_t i = 0; i < m->n_hier; i++) {
                const struct cg_hier *h = &m->hier[i];
                _cleanup_free_ char *dir = NULL;
                r = cg_hier_dyno_dir(m, h, id, &dir);
                if (r < 0)
                        return r;
                /* Only where the dyno has a folder: elsewhere its namespace's root would be
                 * hostd's own cgroup (a dyno without dedicated CPUs has no cpuset). */
                if (access(dir, F_OK) < 0)
                        continue;
                const char *name = strrchr(h->mount, '/');
                name = name ? name + 1 : h->mount;
                const char *opts = h->options ? h->options : h->lib_ctrl;
                if (ret->n >= CG_VIEW_MAX || strlen(name) >= sizeof ret->mounts[0].name ||
                    strlen(opts) >= sizeof ret->mounts[0].options)
                        return -E2BIG;
                strcpy(ret->mounts[ret->n].name, name);
                strcpy(ret->mounts[ret->n].options, opts);
                ret->n++;
        }
        return 0;
}

int cg_contains(struct cg_manager *m, const char *id, pid_t pid)
{
        int r = cg_validate_id(id);
        if (r < 0)
                return r;
        if (pid <= 0)
                return -EINVAL;
        struct cg_hier *h = cg_primary(m);
        _cleanup_free_ char *want = NULL, *have = NULL;
        r = cg_hier_dyno_rel(m, h, id, &want);
        if (r < 0)
                return r;
        r = cg_proc_cgroup_path(pid, m->ops->mode == CG_MODE_V2 ? NULL : "memory", &have);
        if (r < 0)
                return r;
        return strcmp(want, have) == 0;
}

int cg_count_procs(struct cg_manager *m, const char *id)
{
        int r = cg_validate_id(id);
        if (r < 0)
                return r;
        _cleanup_free_ char *dir = NULL;
        r = cg_hier_dyno_dir(m, cg_primary(m), id, &dir);
        if (r < 0)
                return r;
        _cleanup_free_ pid_t *pids = NULL;
        size_t n;
        r = cg_read_pids(dir, &pids, &n);
        if (r < 0)
                return r;
        return n > INT_MAX ? INT_MAX : (int)n;
}

int cg_oom_kills(struct cg_manager *m, const char *id, uint64_t *ret)
{
        int r = cg_validate_id(id);
        if (r < 0)
                return r;
        struct cg_hier *h = cg_primary(m);
        _cleanup_free_ char *rel = NULL;
        r = cg_hier_dyno_rel(m, h, id, &rel);
        if (r < 0)
                return r;
        return cg_lib_read_key(h, rel, m->ops->oom_file, "oom_kill", ret);
}

static int read_u64_file(const char *path, uint64_t *ret)
{
        _cleanup_free_ char *text = NULL;
        int r = read_full_file(path, &text, NULL);
        if (r < 0)
                return r;
        text[strcspn(text, "\n")] = 0;
        return safe_atou64(text, ret);
}

int cg_memory_peak(struct cg_manager *m, const char *id, uint64_t *ret)
{
        bool v2 = m->ops->mode == CG_MODE_V2;
        _cleanup_free_ char *peak = NULL, *swap = NULL;
        int r = cg_file_path(m, id, "memory",
                             v2 ? "memory.peak" : "memory.memsw.max_usage_in_bytes", &peak);
        if (r < 0)
                return r;
        if (!v2) {
                uint64_t v;
                /* Without swap accounting there is no memsw: memory alone is all there is. */
                if (read_u64_file(peak, &v) < 0) {
                        free(peak);
                        peak = NULL;
                        r = cg_file_path(m, id, "memory", "memory.max_usage_in_bytes", &peak);
                        if (r < 0 || (r = read_u64_file(peak, &v)) < 0)
                                return r;
                }
                /* The next peak is the next episode's: writing 0 resets the mark. */
                (void)write_string_file(peak, "0");
                *ret = v;
                return 0;
        }
        uint64_t mem, sw = 0;
        if (read_u64_file(peak, &mem) < 0) {
                /* memory.peak is Linux 5.19; before it, the use now. */
                uint64_t now_swap;
                r = cg_memory_usage(m, id, &mem, &now_swap);
                if (r < 0)
                        return r;
                *ret = mem + now_swap;
                return 0;
        }
        r = cg_file_path(m, id, "memory", "memory.swap.peak", &swap);
        if (r < 0)
                return r;
        if (read_u64_file(swap, &sw) < 0) {
                /* memory.swap.peak is Linux 6.5: the swap in use now instead. */
                free(swap);
                swap = NULL;
                r = cg_file_path(m, id, "memory", "memory.swap.current", &swap);
                if (r < 0 || read_u64_file(swap, &sw) < 0)
                        sw = 0;
        }
        *ret = mem + sw;
        return 0;
}

int cg_memory_usage(struct cg_manager *m, const char *id, uint64_t *ret_memory, uint64_t *ret_swap)
{
        bool v2 = m->ops->mode == CG_MODE_V2;
        _cleanup_free_ char *mem_path = NULL, *swap_path = NULL;
        int r = cg_file_path(m, id, "memory", v2 ? "memory.current" : "memory.usage_in_bytes",
                             &mem_path);
        if (r < 0)
                return r;
        r = cg_file_path(m, id, "memory",
                         v2 ? "memory.swap.current" : "memory.memsw.usage_in_bytes", &swap_path);
        if (r < 0)
                return r;
        uint64_t mem, other = 0;
        r = read_u64_file(mem_path, &mem);
        if (r < 0)
                return r;
        /* Without swap accounting there is no swap to count. */
        if (read_u64_file(swap_path, &other) < 0)
                other = v2 ? 0 : mem;
        *ret_memory = mem;
        /* v1 counts memory and swap together in memsw. */
        *ret_swap = v2 ? other : other > mem ? other - mem : 0;
        return 0;
}

int cg_cpu_pids(struct cg_manager *m, const char *id, uint64_t *ret_cpu_usec, uint64_t *ret_pids)
{
        bool v2 = m->ops->mode == CG_MODE_V2;
        _cleanup_free_ char *pids_path = NULL;
        int r = cg_file_path(m, id, "pids", "pids.current", &pids_path);
        if (r < 0 || (r = read_u64_file(pids_path, ret_pids)) < 0)
                return r;
        if (!v2) {
                _cleanup_free_ char *path = NULL;
                uint64_t ns;
                r = cg_file_path(m, id, "cpuacct", "cpuacct.usage", &path);
                if (r < 0 || (r = read_u64_file(path, &ns)) < 0)
                        return r;
                *ret_cpu_usec = ns / 1000;
                return 0;
        }
        _cleanup_free_ char *path = NULL, *text = NULL;
        r = cg_file_path(m, id, NULL, "cpu.stat", &path);
        if (r < 0 || (r = read_full_file(path, &text, NULL)) < 0)
                return r;
        /* "usage_usec N" is its first line; the key is looked for all the same. */
        for (char *line = text; line && *line;) {
                char *nl = strchr(line, '\n');
                if (nl)
                        *nl = 0;
                if (startswith(line, "usage_usec "))
                        return safe_atou64(line + strlen("usage_usec "), ret_cpu_usec);
                line = nl ? nl + 1 : NULL;
        }
        return -ENODATA;
}

int cg_memory_watch(struct cg_manager *m, const char *id, uint64_t quota, int *ret_fd,
                    uint32_t *ret_epoll_events, struct cg_event_reg *ret_reg)
{
        _cleanup_free_ char *path = NULL;
        *ret_reg = (struct cg_event_reg)CG_EVENT_REG_INIT;
        if (m->ops->mode == CG_MODE_V2) {
                int r = cg_file_path(m, id, NULL, "memory.events", &path);
                if (r < 0)
                        return r;
                int fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        return -errno;
                *ret_fd = fd;
                *ret_epoll_events = EPOLLPRI;
                return 0;
        }

        _cleanup_free_ char *control = NULL;
        int r = cg_file_path(m, id, "memory", "memory.memsw.usage_in_bytes", &path);
        if (r >= 0)
                r = cg_file_path(m, id, "memory", "cgroup.event_control", &control);
        if (r < 0)
                return r;
        struct cg_event_reg reg = CG_EVENT_REG_INIT;
        reg.file = open(path, O_RDONLY | O_CLOEXEC);
        if (reg.file < 0)
                return errno == ENOENT ? -EOPNOTSUPP : -errno;
        _cleanup_close_ int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        reg.control = open(control, O_WRONLY | O_CLOEXEC | O_NOCTTY);
        /* The registration's own copy: its number stays its own until it is written. */
        reg.efd = efd >= 0 ? fcntl(efd, F_DUPFD_CLOEXEC, 3) : -1;
        if (efd < 0 || reg.control < 0 || reg.efd < 0) {
                r = -errno;
                cg_event_reg_close(&reg);
                return r;
        }
        reg.arg = quota;
        reg.has_arg = true;
        *ret_fd = TAKE_FD(efd);
        *ret_epoll_events = EPOLLIN;
        *ret_reg = reg;
        return 0;
}

int cg_event_register(const struct cg_event_reg *reg)
{
        if (reg->control < 0)
                return 0;
        char line[64];
        int len = reg->has_arg ? snprintf(line, sizeof line, "%d %d %" PRIu64, reg->efd, reg->file,
                                          reg->arg) :
                                 snprintf(line, sizeof line, "%d %d", reg->efd, reg->file);
        ssize_t k;
        while ((k = write(reg->control, line, (size_t)len)) < 0 && errno == EINTR)
                ;
        return k < 0 ? -errno : 0;
}

void cg_event_reg_close(struct cg_event_reg *reg)
{
        closep(&reg->control);
        closep(&reg->efd);
        closep(&reg->file);
        *reg = (struct cg_event_reg)CG_EVENT_REG_INIT;
}

int cg_oom_watch(struct cg_manager *m, const char *id, int *ret_fd, uint32_t *ret_epoll_events)
{
        bool v2 = m->ops->mode == CG_MODE_V2;
        _cleanup_free_ char *path = NULL, *control = NULL;
        int r = cg_file_path(m, id, "memory", m->ops->oom_file, &path);
        if (r < 0)
                return r;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (v2) {
                *ret_fd = TAKE_FD(fd);
                *ret_epoll_events = EPOLLPRI;
                return 0;
        }
        r = cg_file_path(m, id, "memory", "cgroup.event_control", &control);
        if (r < 0)
                return r;
        _cleanup_close_ int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (efd < 0)
                return -errno;
        char line[64];
        snprintf(line, sizeof line, "%d %d", efd, fd);
        /* The kernel holds memory.oom_control from here on: ours may close. */
        r = write_string_file(control, line);
        if (r < 0)
                return r;
        *ret_fd = TAKE_FD(efd);
        *ret_epoll_events = EPOLLIN;
        return 0;
}

void cg_memory_watch_ack(struct cg_manager *m, int fd)
{
        char buf[512];
        if (m->ops->mode == CG_MODE_V2) {
                /* kernfs reports a change until the file is read again. */
                (void)!pread(fd, buf, sizeof buf, 0);
                return;
        }
        uint64_t n;
        (void)!read(fd, &n, sizeof n);
}

static int strv_contains(char **v, size_t n, const char *s)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(v[i], s) == 0)
                        return 1;
        return 0;
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

int cg_list(struct cg_manager *m, char ***ret)
{
        _cleanup_strv_free_ char **v = calloc(1, sizeof *v);
        if (!v)
                return -ENOMEM;
        size_t n = 0;

        /* Every hierarchy: a half-made or half-removed dyno may exist in only some. */
        for (size_t i = 0; i < m->n_hier; i++) {
                _cleanup_free_ char *dir = NULL;
                int r = cg_hier_dyno_dir(m, &m->hier[i], NULL, &dir);
                if (r < 0)
                        return r;
                DIR *d = opendir(dir);
                if (!d) {
                        if (errno == ENOENT)
                                continue;
                        return -errno;
                }
                struct dirent *de;
                r = 0;
                while ((de = readdir(d))) {
                        if (de->d_type != DT_DIR || cg_validate_id(de->d_name) < 0 ||
                            strv_contains(v, n, de->d_name))
                                continue;
                        char **nv = realloc(v, (n + 2) * sizeof *v);
                        if (!nv) {
                                r = -ENOMEM;
                                break;
                        }
                        v = nv;
                        v[n] = strdup(de->d_name);
                        v[n + 1] = NULL;
                        if (!v[n]) {
                                r = -ENOMEM;
                                break;
                        }
                        n++;
                }
                closedir(d);
                if (r < 0)
                        return r;
        }
        qsort(v, n, sizeof *v, cmp_str);
        *ret = TAKE_PTR(v);
        return 0;
}

int cg_file_path(struct cg_manager *m, const char *id, const char *controller, const char *file,
                 char **ret)
{
        int r = cg_validate_id(id);
        if (r < 0)
                return r;
        if (!file || !*file || strchr(file, '/'))
                return -EINVAL;

        struct cg_hier *h = cg_primary(m);
        if (controller && m->ops->mode == CG_MODE_V1) {
                h = NULL;
                for (int c = 0; c < _CG_CTRL_MAX; c++)
                        if (strcmp(controller, controller_names[c]) == 0) {
                                h = cg_hier_for(m, c);
                                if (!h)
                                        return -EOPNOTSUPP;
                        }
                if (!h)
                        return -EINVAL;
        }
        return asprintf_safe(ret, "%s%s/dynos/%s/%s", h->mount, h->base_rel, id, file);
}

int cg_dyno_path(struct cg_manager *m, const char *id, char **ret)
{
        int r = cg_validate_id(id);
        if (r < 0)
                return r;
        return cg_hier_dyno_rel(m, cg_primary(m), id, ret);
}

/* ---- dedicated CPUs ---- */

int cg_cpus_available(struct cg_manager *m, char **ret)
{
        _cleanup_free_ char *dir = NULL;
        int r = m->ops->cpuset_dir(m, NULL, &dir);
        if (r < 0)
                return r;
        /* v1: the configured list is what children may take; v2: what the kernel grants. */
        return cg_read(dir, m->ops->mode == CG_MODE_V2 ? "cpuset.cpus.effective" : "cpuset.cpus",
                       ret);
}

int cg_get_cpus(struct cg_manager *m, const char *id, char **ret)
{
        int r = cg_validate_id(id);
        if (r < 0)
                return r;
        struct cg_hier *h = cg_hier_for(m, CG_CTRL_CPUSET);
        if (!h)
                return -EOPNOTSUPP;
        _cleanup_free_ char *dir = NULL;
        r = cg_hier_dyno_dir(m, h, id, &dir);
        if (r < 0)
                return r;
        if (access(dir, F_OK) < 0)
                return -errno;
        /* v2 without cpuset enabled above it: the dyno inherits. */
        if (!cg_file_exists(dir, "cpuset.cpus")) {
                *ret = strdup("");
                return *ret ? 0 : -ENOMEM;
        }
        return cg_read(dir, "cpuset.cpus", ret);
}

int cg_set_cpus(struct cg_manager *m, const char *id, const char *cpus)
{
        int r = cg_validate_id(id);
        if (r < 0)
                return r;
        if (!cpus)
                return -EINVAL;
        _cleanup_free_ char *dir = NULL;
        r = m->ops->cpuset_dir(m, id, &dir);
        if (r < 0)
                return r;
        if (access(dir, F_OK) < 0)
                return -errno;
        return cg_write(dir, "cpuset.cpus", cpus);
}
