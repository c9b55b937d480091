# Puma's configuration, as Heroku's guide for Ruby apps has it (single mode, two threads).
$stdout.sync = true

port ENV.fetch("PORT", 5000)
threads 2, 2
# Single mode: one process. (Puma would take WEB_CONCURRENCY as its number of workers.)
workers 0
rackup "config.ru"
environment ENV.fetch("RACK_ENV", "production")

# SIGTERM: stop taking requests, finish those in flight, then exit 0 (at_exit hooks run),
# not re-raise SIGTERM once done (puma 5's default), which would exit 143.
raise_exception_on_sigterm false
