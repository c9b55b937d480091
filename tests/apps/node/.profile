# The app's own settings, sourced after the buildpack's .profile.d/*.sh: its WEB_CONCURRENCY
# in place of the computed default.
export WEB_CONCURRENCY=1
