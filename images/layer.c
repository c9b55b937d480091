/* A dyno's root is an overlay: the slug over the stack, both read-only and shared by every
 * dyno that uses them, under a writable layer of its own that is thrown away when it ends. */
#include <sys/stat.h>
#include <unistd.h>

#include "images.h"
#include "util.h"

int layer_create(const char *layers_dir, const char *id, unsigned uid, char **ret_dir, char *err,
                 size_t errlen)
{
        _cleanup_free_ char *dir = strjoin3(layers_dir, "/", id);
        if (!dir)
                return -ENOMEM;
        if (mkdir(dir, 0755) < 0) {
                int r = -errno;
                return set_error(err, errlen, r, "create %s: %s", dir, strerror(-r));
        }
        /* upper/app belongs to the dyno's user: the app may write in /app, as on Heroku. */
        static const char *const sub[] = { "/upper", "/work", "/merged", "/upper/app" };
        for (size_t i = 0; i < ELEMENTSOF(sub); i++) {
                _cleanup_free_ char *p = strjoin3(dir, sub[i], NULL);
                int r = 0;
                if (!p)
                        r = -ENOMEM;
                else if (mkdir(p, 0755) < 0 ||
                         (strcmp(sub[i], "/upper/app") == 0 && chown(p, uid, uid) < 0))
                        r = -errno;
                if (r < 0) {
                        (void)set_error(err, errlen, 0, "create %s: %s", p ? p : dir, strerror(-r));
                        (void)rm_rf(dir);
                        return r;
                }
        }
        *ret_dir = TAKE_PTR(dir);
        return 0;
}

int layer_mount_options(const char *stack, const char *slug, const char *layer_dir, char **ret)
{
        /* overlayfs reads ',' and ':' as separators and '\' as an escape: paths holding them
         * are refused where they enter (validate.c), and never made by the store. */
        if (strpbrk(stack, ",:\\") || strpbrk(layer_dir, ",:\\") || (slug && strpbrk(slug, ",:\\")))
                return -EINVAL;
        /* volatile: the layer is thrown away with the dyno, on any crash too (hostd never
         * mounts it again), so nothing is gained by syncing it. Without it, overlayfs fsyncs
         * every file it copies up (the passwd and group entries of every start, any stack file
         * an app changes) and passes the app's own fsyncs to the host's disk. */
        if (slug)
                return asprintf_safe(ret,
                                     "lowerdir=%s:%s,upperdir=%s/upper,workdir=%s/work,volatile",
                                     slug, stack, layer_dir, layer_dir);
        return asprintf_safe(ret, "lowerdir=%s,upperdir=%s/upper,workdir=%s/work,volatile", stack,
                             layer_dir, layer_dir);
}

int layer_remove(const char *layer_dir) { return rm_rf(layer_dir); }
