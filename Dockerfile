FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY api api
COPY cli cli
COPY extraction extraction
COPY worker worker
COPY db db
COPY core core
COPY migrations migrations
RUN pip install --no-cache-dir .
RUN useradd --create-home imageextract && mkdir -p /var/lib/imageextract \
    && chown imageextract /var/lib/imageextract
USER imageextract
EXPOSE 8000
CMD ["imageextract", "api", "--host", "0.0.0.0", "--port", "8000"]
