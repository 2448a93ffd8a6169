# Every key the agent reads, plus the raw sections kept for later work.
node_name      = "web-1"
datacenter     = "eu_west-1"
data_dir       = "/var/lib/outrigger"
bind_addr      = "10.0.0.5"
advertise_addr = "192.0.2.10"
client_addr    = "0.0.0.0"

ports {
  http     = 18500
  dns      = 18600
  serf_lan = 18301
  server   = 18300
}

server                  = true
bootstrap_expect        = 3
retry_join              = ["10.0.0.6", "consul.internal:8301", "[2001:db8::1]:8301"]
retry_interval          = "30s"
retry_max               = 10
reconnect_timeout       = "24h"
encrypt                 = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="
leave_on_terminate      = false
skip_leave_on_interrupt = true
log_level               = "DEBUG"
log_json                = true
autopilot {
  cleanup_dead_servers               = false
  dead_server_last_contact_threshold = "36h"
}

node_meta {
  rack    = "r1"
  version = 2
}

enable_script_checks = true

service {
  name = "web"
  port = 8080
  tags = ["a", "b"]
}

services = [
  { name = "db", port = 5432, checks = [{ tcp = "localhost:5432", interval = "10s" }] },
]

check {
  id       = "mem"
  ttl      = "30s"
}

checks = [{ id = "disk", ttl = "1m" }]

watches = [{ type = "key", key = "foo" }]

templates = [{ source = "in.ctmpl", destination = "out.conf" }]

ingress_name = "edge"

proxy {
  drain_timeout = "10s"
}

ingress {
  listeners = [{ port = 8080, protocol = "tcp", service = "db" }]
}

recursors  = ["1.1.1.1", "8.8.8.8"]
domain     = "consul."
alt_domain = "outrigger."

dns_config {
  allow_stale = true
  max_stale   = "87600h"
}
