"""Another platform reached through nginx configured as ingress-nginx 0.16.2 renders a Kubeless HTTPTrigger's
Ingress (roles/local_ingress). The platform it wraps is named by `via`; its role and server time are that
platform's (the ingress adds a hop, not a server timer)."""

from analysis.bench.platforms import Kind, register

INGRESS_NGINX = register(Kind(
    name="ingress-nginx",
    role="function",
    label="through ingress-nginx 0.16.2",
    body_limit_check=True,
    upstream="kubernetes/ingress-nginx 0.16.2 (nginx.tmpl)",
))
