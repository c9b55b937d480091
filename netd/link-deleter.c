/* The worker that deletes dynos' veths off netd's loop; see link-deleter.h. */
#include "link-deleter.h"
#include "link.h"
#include "util.h"

#include <pthread.h>
#include <signal.h>

struct deletion {
        struct deletion *next;
        int ifindex;
        char ifname[IFNAMSIZ];
        char dyno_id[DYNO_INSTANCE_NAME_MAX + 1];
};

struct link_deleter {
        pthread_t thread;
        pthread_mutex_t lock;
        /* Signalled when a deletion is queued, when one ends, and at the end. */
        pthread_cond_t changed;
        struct deletion *head, **tail;
        struct deletion *running; /* taken off the queue by the worker, not yet done */
        bool stopping;
};

static void *worker(void *userdata)
{
        struct link_deleter *d = userdata;
        pthread_mutex_lock(&d->lock);
        for (;;) {
                while (!d->head && !d->stopping)
                        pthread_cond_wait(&d->changed, &d->lock);
                struct deletion *x = d->head;
                if (!x)
                        break; /* stopping, and nothing left */
                d->head = x->next;
                if (!d->head)
                        d->tail = &d->head;
                d->running = x;
                pthread_mutex_unlock(&d->lock);

                int r = link_delete_ifindex(x->ifindex);
                if (r < 0)
                        log_error_errno(r,
                                        "dyno %s: delete its veth %s (ifindex %d): %m; the next "
                                        "gc removes it",
                                        x->dyno_id, x->ifname, x->ifindex);

                pthread_mutex_lock(&d->lock);
                d->running = NULL;
                free(x);
                pthread_cond_broadcast(&d->changed);
        }
        pthread_mutex_unlock(&d->lock);
        return NULL;
}

int link_deleter_new(struct link_deleter **ret)
{
        struct link_deleter *d = calloc(1, sizeof *d);
        if (!d)
                return -ENOMEM;
        d->tail = &d->head;
        pthread_mutex_init(&d->lock, NULL);
        pthread_cond_init(&d->changed, NULL);

        /* netd takes its signals through sd-event: none may land on the worker. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int r = pthread_create(&d->thread, NULL, worker, d);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r != 0) {
                pthread_cond_destroy(&d->changed);
                pthread_mutex_destroy(&d->lock);
                free(d);
                return -r;
        }
        *ret = d;
        return 0;
}

void link_deleter_free(struct link_deleter *d)
{
        if (!d)
                return;
        pthread_mutex_lock(&d->lock);
        d->stopping = true;
        pthread_cond_broadcast(&d->changed);
        pthread_mutex_unlock(&d->lock);
        pthread_join(d->thread, NULL);
        pthread_cond_destroy(&d->changed);
        pthread_mutex_destroy(&d->lock);
        free(d);
}

int link_deleter_queue(struct link_deleter *d, int ifindex, const char *ifname, const char *dyno_id)
{
        struct deletion *x = calloc(1, sizeof *x);
        if (!x)
                return -ENOMEM;
        x->ifindex = ifindex;
        snprintf(x->ifname, sizeof x->ifname, "%s", ifname);
        snprintf(x->dyno_id, sizeof x->dyno_id, "%s", dyno_id);
        pthread_mutex_lock(&d->lock);
        *d->tail = x;
        d->tail = &x->next;
        pthread_cond_broadcast(&d->changed);
        pthread_mutex_unlock(&d->lock);
        return 0;
}

static bool pending_locked(struct link_deleter *d, const char *ifname)
{
        if (d->running && strcmp(d->running->ifname, ifname) == 0)
                return true;
        for (struct deletion *x = d->head; x; x = x->next)
                if (strcmp(x->ifname, ifname) == 0)
                        return true;
        return false;
}

bool link_deleter_pending(struct link_deleter *d, const char *ifname)
{
        pthread_mutex_lock(&d->lock);
        bool p = pending_locked(d, ifname);
        pthread_mutex_unlock(&d->lock);
        return p;
}

void link_deleter_wait(struct link_deleter *d, const char *ifname)
{
        pthread_mutex_lock(&d->lock);
        while (pending_locked(d, ifname))
                pthread_cond_wait(&d->changed, &d->lock);
        pthread_mutex_unlock(&d->lock);
}

unsigned link_deleter_drain(struct link_deleter *d)
{
        unsigned n = 0;
        pthread_mutex_lock(&d->lock);
        n += d->running ? 1 : 0;
        for (struct deletion *x = d->head; x; x = x->next)
                n++;
        while (d->head || d->running)
                pthread_cond_wait(&d->changed, &d->lock);
        pthread_mutex_unlock(&d->lock);
        return n;
}
