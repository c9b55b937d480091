/* One worker thread for the kernel calls that wait (offload.h). The worker never allocates:
 * hostd clones its dynos' processes with clone3, which runs no fork handlers, so a child must
 * never find a lock of the allocator held by this thread. */
#include "offload.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util.h"

struct offload {
        sd_event_source *source; /* the eventfd: jobs done */
        int efd;
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t wake;
        /* under lock: */
        struct offload_job *queue, **queue_tail; /* to run, in order */
        struct offload_job **urgent_tail;        /* after the last urgent job in queue */
        struct offload_job *done, **done_tail;   /* run, for the loop to finish */
        bool stopping;
        /* the loop's own: */
        size_t pending;
};

static void *worker(void *userdata)
{
        struct offload *o = userdata;
        pthread_mutex_lock(&o->lock);
        for (;;) {
                while (!o->queue && !o->stopping)
                        pthread_cond_wait(&o->wake, &o->lock);
                struct offload_job *j = o->queue;
                if (!j)
                        break; /* stopping, and nothing left to run */
                o->queue = j->next;
                if (!o->queue)
                        o->queue_tail = &o->queue;
                if (o->urgent_tail == &j->next)
                        o->urgent_tail = &o->queue;
                pthread_mutex_unlock(&o->lock);

                j->run(j);

                pthread_mutex_lock(&o->lock);
                j->next = NULL;
                *o->done_tail = j;
                o->done_tail = &j->next;
                uint64_t one = 1;
                (void)!write(o->efd, &one, sizeof one);
        }
        pthread_mutex_unlock(&o->lock);
        return NULL;
}

/* On the loop: finish every job the worker has run, in the order they ran. */
static void offload_finish(struct offload *o)
{
        pthread_mutex_lock(&o->lock);
        struct offload_job *j = o->done;
        o->done = NULL;
        o->done_tail = &o->done;
        pthread_mutex_unlock(&o->lock);
        while (j) {
                struct offload_job *next = j->next;
                o->pending--;
                j->done(j);
                j = next;
        }
}

static int on_done(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        uint64_t n;
        (void)!read(fd, &n, sizeof n);
        offload_finish(userdata);
        return 0;
}

int offload_new(sd_event *e, struct offload **ret)
{
        struct offload *o = calloc(1, sizeof *o);
        if (!o)
                return -ENOMEM;
        o->queue_tail = o->urgent_tail = &o->queue;
        o->done_tail = &o->done;
        o->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (o->efd < 0) {
                int r = -errno;
                free(o);
                return r;
        }
        int r = sd_event_add_io(e, &o->source, o->efd, EPOLLIN, on_done, o);
        if (r < 0) {
                close(o->efd);
                free(o);
                return r;
        }
        pthread_mutex_init(&o->lock, NULL);
        pthread_cond_init(&o->wake, NULL);
        /* No signal for the worker: the loop takes them all through signalfd. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        r = -pthread_create(&o->thread, NULL, worker, o);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r < 0) {
                sd_event_source_disable_unref(o->source);
                close(o->efd);
                pthread_cond_destroy(&o->wake);
                pthread_mutex_destroy(&o->lock);
                free(o);
                return r;
        }
        *ret = o;
        return 0;
}

void offload_free(struct offload *o)
{
        if (!o)
                return;
        pthread_mutex_lock(&o->lock);
        o->stopping = true;
        pthread_cond_signal(&o->wake);
        pthread_mutex_unlock(&o->lock);
        pthread_join(o->thread, NULL);
        offload_finish(o);
        sd_event_source_disable_unref(o->source);
        close(o->efd);
        pthread_cond_destroy(&o->wake);
        pthread_mutex_destroy(&o->lock);
        free(o);
}

void offload_submit(struct offload *o, struct offload_job *j, bool urgent)
{
        o->pending++;
        pthread_mutex_lock(&o->lock);
        struct offload_job **at = urgent ? o->urgent_tail : o->queue_tail;
        j->next = *at;
        *at = j;
        if (o->queue_tail == at)
                o->queue_tail = &j->next;
        if (urgent)
                o->urgent_tail = &j->next;
        pthread_cond_signal(&o->wake);
        pthread_mutex_unlock(&o->lock);
}

size_t offload_pending(const struct offload *o) { return o ? o->pending : 0; }
