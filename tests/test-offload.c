/* Unit tests for hostd/offload.c: jobs run on the worker, in order with the urgent ones first,
 * are finished on the loop's thread, leave the loop free while they wait, and are all
 * finished by offload_free(). */
#include "offload.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "util.h"

#include "check.h"

struct test_job {
        struct offload_job job;
        char name;
        int wait_fd; /* >= 0: run() blocks until a byte comes */
        pthread_t ran_on, done_on;
};

static char order_run[16], order_done[16];
static size_t n_run, n_done;
static int started[2]; /* a blocking job says it runs */

static void job_run(struct offload_job *j)
{
        struct test_job *t = container_of(j, struct test_job, job);
        t->ran_on = pthread_self();
        if (t->wait_fd >= 0) {
                char c;
                (void)!write(started[1], "s", 1);
                (void)!read(t->wait_fd, &c, 1);
        }
        order_run[n_run++] = t->name; /* only the worker writes it */
}

static void job_done(struct offload_job *j)
{
        struct test_job *t = container_of(j, struct test_job, job);
        t->done_on = pthread_self();
        order_done[n_done++] = t->name;
}

static struct test_job *job_new(char name, int wait_fd)
{
        struct test_job *t = calloc(1, sizeof *t);
        t->job.run = job_run;
        t->job.done = job_done;
        t->name = name;
        t->wait_fd = wait_fd;
        return t;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        (*(int *)userdata)++;
        return 0;
}

static void test_order(void)
{
        printf("urgent jobs first, finished on the loop, the loop free meanwhile\n");
        n_run = n_done = 0;
        memset(order_run, 0, sizeof order_run);
        memset(order_done, 0, sizeof order_done);
        sd_event *e = NULL;
        CHECK_R(sd_event_new(&e), 0);
        struct offload *o = NULL;
        CHECK_R(offload_new(e, &o), 0);
        int gate[2];
        CHECK(pipe2(gate, O_CLOEXEC) == 0);

        struct test_job *jobs[] = { job_new('w', gate[0]), job_new('a', -1), job_new('b', -1),
                                    job_new('U', -1),      job_new('V', -1), job_new('c', -1) };
        bool urgent[] = { false, false, false, true, true, false };
        /* The rest is queued while the worker is in 'w'. */
        offload_submit(o, &jobs[0]->job, urgent[0]);
        char c;
        CHECK(read(started[0], &c, 1) == 1);
        for (size_t i = 1; i < ELEMENTSOF(jobs); i++)
                offload_submit(o, &jobs[i]->job, urgent[i]);
        CHECK(offload_pending(o) == ELEMENTSOF(jobs));

        /* The worker waits in 'w': the loop still turns (a timer fires) and nothing is done. */
        int fired = 0;
        sd_event_source *timer = NULL;
        CHECK_R(sd_event_add_time_relative(e, &timer, CLOCK_MONOTONIC, 1000, 0, on_timer, &fired),
                0);
        while (fired == 0)
                CHECK(sd_event_run(e, UINT64_MAX) >= 0);
        CHECK(n_done == 0);

        CHECK(write(gate[1], "x", 1) == 1);
        while (n_done < ELEMENTSOF(jobs))
                CHECK(sd_event_run(e, UINT64_MAX) >= 0);
        CHECK(strcmp(order_run, "wUVabc") == 0);
        CHECK(strcmp(order_done, "wUVabc") == 0);
        CHECK(offload_pending(o) == 0);
        for (size_t i = 0; i < ELEMENTSOF(jobs); i++) {
                CHECK(!pthread_equal(jobs[i]->ran_on, pthread_self()));
                CHECK(pthread_equal(jobs[i]->done_on, pthread_self()));
                free(jobs[i]);
        }
        sd_event_source_disable_unref(timer);
        offload_free(o);
        close(gate[0]);
        close(gate[1]);
        sd_event_unref(e);
}

static void test_free_finishes(void)
{
        printf("offload_free() runs and finishes every job queued\n");
        n_run = n_done = 0;
        memset(order_run, 0, sizeof order_run);
        memset(order_done, 0, sizeof order_done);
        sd_event *e = NULL;
        CHECK_R(sd_event_new(&e), 0);
        struct offload *o = NULL;
        CHECK_R(offload_new(e, &o), 0);
        int gate[2];
        CHECK(pipe2(gate, O_CLOEXEC) == 0);
        struct test_job *jobs[] = { job_new('w', gate[0]), job_new('a', -1), job_new('U', -1) };
        offload_submit(o, &jobs[0]->job, false);
        char c;
        CHECK(read(started[0], &c, 1) == 1);
        offload_submit(o, &jobs[1]->job, false);
        offload_submit(o, &jobs[2]->job, true);
        CHECK(write(gate[1], "x", 1) == 1);
        offload_free(o); /* without a turn of the loop */
        CHECK(n_done == 3);
        CHECK(strcmp(order_done, "wUa") == 0);
        for (size_t i = 0; i < ELEMENTSOF(jobs); i++) {
                CHECK(pthread_equal(jobs[i]->done_on, pthread_self()));
                free(jobs[i]);
        }
        close(gate[0]);
        close(gate[1]);
        sd_event_unref(e);
}

int main(void)
{
        if (pipe2(started, O_CLOEXEC) < 0)
                return 1;
        test_order();
        test_free_finishes();
        if (n_failed) {
                fprintf(stderr, "%d check(s) failed\n", n_failed);
                return 1;
        }
        printf("all passed\n");
        return 0;
}
