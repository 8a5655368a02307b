# An OpenID provider to try single sign-on with docker-compose.yml (profile
# "sso"): the same oidc-provider script the tests run (tests/oidc), with the
# users and client in docker/oidc-demo.json. Its login page takes any
# password for a known user: for trying Sallyport only, never for real use.
FROM node:20-bookworm-slim
WORKDIR /app
COPY tests/oidc/package.json tests/oidc/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY tests/oidc/provider.mjs ./
COPY docker/oidc-demo.json ./
USER node
CMD ["node", "provider.mjs", "oidc-demo.json"]
