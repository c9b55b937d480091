# A small Rack app, as a Ruby user deploys one under puma, with the endpoints hostd's real-app
# tests look at.
require "etc"
require "rack"
require "rbconfig"

$stdout.sync = true

LIMIT_FILES = ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"].freeze

# A child that takes memory until the kernel's OOM killer ends it; the app itself stays up.
# The child volunteers to be the one killed (oom_score_adj), as a worker pool's children do.
HOG = <<~RUBY
  begin
    File.write("/proc/self/oom_score_adj", "1000")
  rescue SystemCallError
  end
  hog = []
  loop { hog << ("x" * (8 << 20)) }
RUBY

class App
  def call(env)
    req = Rack::Request.new(env)
    case req.path_info
    when "/" then text(200, "ok")
    when "/slow"
      ms = Integer(req.params.fetch("ms", "1000"))
      puts "slow request started (#{ms} ms)"
      sleep(ms / 1000.0)
      text(200, "slow request completed after #{ms} ms")
    when "/limit" then memory_limit
    when "/whoami" then whoami
    when "/env"
      name = req.params.fetch("name", "")
      ENV.key?(name) ? text(200, ENV[name]) : text(404, "#{name} is not set")
    when "/oom" then start_oom_child
    else text(404, "not found")
    end
  end

  private

  def text(status, body)
    [status, { "content-type" => "text/plain", "content-length" => body.bytesize.to_s }, [body]]
  end

  def memory_limit
    LIMIT_FILES.each do |path|
      return text(200, File.read(path).strip)
    rescue Errno::ENOENT
      next
    rescue SystemCallError => e
      return text(500, "#{path}: #{e.message}")
    end
    text(500, "no memory limit in /sys/fs/cgroup")
  end

  def whoami
    text(200, Etc.getpwuid(Process.uid).name)
  rescue ArgumentError => e
    text(500, "Etc.getpwuid: #{e.message}")
  end

  def start_oom_child
    pid = Process.spawn(RbConfig.ruby, "-e", HOG)
    puts "oom child #{pid} started"
    Thread.new do
      _, status = Process.wait2(pid)
      how = status.signaled? ? "killed by SIG#{Signal.signame(status.termsig)}" : "exit status #{status.exitstatus}"
      puts "oom child #{pid} ended: #{how}"
    end
    text(202, "oom child #{pid} started")
  end
end

puts "app loaded, WEB_CONCURRENCY=#{ENV["WEB_CONCURRENCY"]}"

# Runs when puma exits, after it has finished the requests in flight.
at_exit { puts "shutdown hook ran" }

run App.new
